"""Amounts of ETH as the commands take them, and what they send to the vault.

Deposits and stakes are sent to the vault on the platform's chain: ``CXMPUTE_CHAIN_RPC_URL``, else the embedded
chain the platform's API serves. The chain libraries are imported only when something is sent, so the commands
that send nothing start without them.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from compute.cli.output import err
from cxmpute.client import PlatformClient
from cxmpute.errors import CxmputeError

GWEI = 10**9


def to_wei(eth: float, option: str) -> int:
    try:
        wei = int(Decimal(str(eth)) * 10**18)
    except (InvalidOperation, ValueError, OverflowError):  # nan and inf parse as floats
        raise CxmputeError(f"{eth!r} is not an amount of ETH", field=option) from None
    if wei < GWEI:
        raise CxmputeError("give at least 0.000000001 ETH (1 gwei)", field=option)
    return wei


def eth_text(wei: int) -> str:
    text = format(Decimal(wei) / 10**18, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def one_of(eth: float | None, tx_hash: str | None) -> None:
    if (eth is None) == (tx_hash is None):
        raise CxmputeError("give exactly one of --eth or --tx-hash", field="--eth")


def to_vault(api: PlatformClient, function: str, eth: float) -> str:
    """Send ``eth`` to the vault's ``function`` on the platform's chain from the client's wallet."""
    from compute.chain.client import platform_rpc_url, send_to_vault

    wei = to_wei(eth, "--eth")
    wallet = api.wallet
    if api.api_key:
        account = api.get("/v1/account/balance")["address"]
        if account.lower() != wallet.address.lower():
            # The platform credits only what the account's own address sent: refuse before spending anything.
            raise CxmputeError(
                f"CXMPUTE_API_KEY acts for {account} but the wallet is {wallet.address}: set "
                f"CXMPUTE_WALLET_KEY to {account}'s key",
                field="CXMPUTE_WALLET_KEY",
            )
    chain = api.get("/v1/account/chain")
    tx_hash = send_to_vault(
        platform_rpc_url(api.base_url), chain["vault_address"], chain["chain_id"], wallet, function, wei, field="--eth"
    )
    # Should the credit that follows fail, this hash is what --tx-hash takes to claim the funds sent.
    err.print(f"sent {function} {tx_hash} on chain {chain['chain_id']}", soft_wrap=True, highlight=False)
    return tx_hash

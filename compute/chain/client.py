"""Reads deposits and stakes from transaction receipts and pays out from the vault.

The operator of the vault is the platform signer (see :mod:`compute.signer`), so the same key signs
receipts and sends payouts. With no ``CXMPUTE_CHAIN_RPC_URL`` an eth-tester chain runs in-process and
the vault is deployed on it at first use.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from eth_account import Account
from eth_tester.exceptions import TransactionFailed
from web3 import Web3
from web3.exceptions import TransactionNotFound

from compute.errors import ComputeError
from compute.signer import platform_account
from cxmpute.errors import Forbidden
from cxmpute.settings import get_settings

ARTIFACT = Path(__file__).parent / "contracts" / "CxmputeVault.json"
_TESTER_FUNDING_WEI = 10**21


@dataclass(frozen=True)
class ChainEvent:
    chain_id: int
    tx_hash: str
    log_index: int
    account: str
    amount_wei: int


class Chain:
    def __init__(self, w3: Web3, vault_address: str, operator: Account):
        self.w3 = w3
        self.operator = operator
        self.vault = w3.eth.contract(address=Web3.to_checksum_address(vault_address), abi=_artifact()["abi"])
        self._send_lock = threading.Lock()

    @cached_property
    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    @property
    def vault_address(self) -> str:
        return self.vault.address

    @classmethod
    def in_process(cls) -> Chain:
        from web3 import EthereumTesterProvider

        w3 = Web3(EthereumTesterProvider())
        operator = platform_account()
        w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": operator.address, "value": _TESTER_FUNDING_WEI})
        artifact = _artifact()
        factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        receipt = _send(w3, operator, factory.constructor().build_transaction(_tx_base(w3, operator)))
        return cls(w3, receipt["contractAddress"], operator)

    def events(self, tx_hash: str, event: str, account: str) -> list[ChainEvent]:
        """The vault's ``event`` logs in a successful, confirmed transaction sent by ``account``.

        Raises a 4xx error naming ``tx_hash`` when the transaction is unknown, failed, unconfirmed,
        not to the vault, or was sent by someone else (so nobody can claim another's deposit).
        """
        try:
            receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        except (TransactionNotFound, ValueError) as exc:
            raise ComputeError(f"transaction {tx_hash} not found on chain {self.chain_id}", field="tx_hash") from exc
        if receipt["status"] != 1:
            raise ComputeError("transaction failed on chain", field="tx_hash")
        confirmations = self.w3.eth.block_number - receipt["blockNumber"] + 1
        if confirmations < get_settings().chain_confirmations:
            raise ComputeError(
                f"transaction has {confirmations} confirmations, needs {get_settings().chain_confirmations}",
                field="tx_hash",
                status_code=409,
            )
        if (receipt["to"] or "").lower() != self.vault.address.lower():
            raise ComputeError("transaction is not to the Cxmpute vault", field="tx_hash")
        if receipt["from"].lower() != account.lower():
            raise Forbidden("transaction was sent by another account", field="tx_hash")
        logs = getattr(self.vault.events, event)().process_receipt(receipt)
        found = [
            ChainEvent(
                self.chain_id,
                receipt["transactionHash"].to_0x_hex(),
                int(log["logIndex"]),
                log["args"][_ACCOUNT_ARG[event]],
                int(log["args"]["amount"]),
            )
            for log in logs
        ]
        if not found:
            raise ComputeError(f"transaction has no {event} event", field="tx_hash")
        return found

    def rpc(self, method: str, params: list, *, operator: bool = False) -> dict:
        """Answer one JSON-RPC request on this chain (the embedded chain serves other processes this way).

        Anyone may read the chain and send a transaction they signed (:data:`PUBLIC_METHODS`); the development
        methods (:data:`OPERATOR_METHODS`) are the ``operator``'s; every other method is refused, so the
        chain's history, which the ledger has credited, cannot be rewritten from outside the process.
        Serialised with the platform's own sends: the in-process EVM is not safe for concurrent writers.
        """
        if method not in PUBLIC_METHODS:
            if method not in OPERATOR_METHODS:
                raise Forbidden(f"{method} is not served on this chain", field="method")
            if not operator:
                raise Forbidden(
                    f"{method} is a development method of the embedded chain: only the platform operator may call it",
                    field="method",
                )
        w3 = self.w3
        with self._send_lock:
            try:
                # The provider's request function applies eth-tester's formatting of parameters and results.
                return dict(w3.provider.request_func(w3, w3.middleware_onion)(method, params))
            except TransactionFailed as exc:
                # A revert is an answer, as a node gives it: web3 turns it into ContractLogicError.
                return {"error": {"code": 3, "message": str(exc)}}
            except Exception as exc:  # eth-tester's formatters reject malformed params with whatever they raise
                raise ComputeError(f"bad params for {method}: {exc}", field="params") from exc

    def pay(self, to: str, amount_wei: int, reference: bytes) -> str:
        tx = self.vault.functions.pay(Web3.to_checksum_address(to), amount_wei, reference).build_transaction(
            _tx_base(self.w3, self.operator)
        )
        with self._send_lock:
            receipt = _send(self.w3, self.operator, tx)
        if receipt["status"] != 1:
            raise ComputeError("payout transaction failed on chain", status_code=502)
        return receipt["transactionHash"].to_0x_hex()


_ACCOUNT_ARG = {"Deposited": "account", "Staked": "provider"}

# What a wallet, web3 or a provider worker needs: reads, gas and fee estimates, and transactions its own key
# signed. Filters are left out: they keep state on the chain for whoever asks.
PUBLIC_METHODS = frozenset(
    {
        "web3_clientVersion",
        "net_version",
        "net_listening",
        "eth_chainId",
        "eth_syncing",
        "eth_blockNumber",
        "eth_getBalance",
        "eth_getTransactionCount",
        "eth_getCode",
        "eth_getStorageAt",
        "eth_call",
        "eth_estimateGas",
        "eth_gasPrice",
        "eth_maxPriorityFeePerGas",
        "eth_feeHistory",
        "eth_getBlockByNumber",
        "eth_getBlockByHash",
        "eth_getBlockTransactionCountByNumber",
        "eth_getBlockTransactionCountByHash",
        "eth_getTransactionByHash",
        "eth_getTransactionReceipt",
        "eth_getLogs",
        "eth_sendRawTransaction",
    }
)
# The development chain's privileges: its unlocked accounts send without a signature (money from nowhere),
# and blocks and time move on demand. Snapshots and reverts are not among them: a revert would make the chain
# forget deposits the ledger has credited, so the same money could be deposited and credited again.
OPERATOR_METHODS = frozenset({"eth_accounts", "eth_sendTransaction", "evm_mine", "testing_timeTravel"})


def _artifact() -> dict:
    return json.loads(ARTIFACT.read_text())


def web3_at(url: str, operator_token: str | None = None) -> Web3:
    """web3 on a JSON-RPC endpoint; with the operator's token, for the embedded chain's development methods.

    Headers given to ``HTTPProvider`` replace its own, so the JSON content type is named again here."""
    headers = Web3.HTTPProvider.get_request_headers()
    if operator_token:
        headers["Authorization"] = f"Bearer {operator_token}"
    return Web3(Web3.HTTPProvider(url, request_kwargs={"headers": headers}))


def vault_abi() -> list[dict]:
    """The vault contract's ABI, for wallets that deposit or stake themselves."""
    return _artifact()["abi"]


def platform_rpc_url(api_url: str) -> str:
    """Where the platform's chain answers JSON-RPC: ``CXMPUTE_CHAIN_RPC_URL``, else the embedded chain the
    platform's API serves (a client process's own in-process chain is another chain: never send there)."""
    return get_settings().chain_rpc_url or f"{api_url.rstrip('/')}/v1/chain/rpc"


FUNDING_HINT = (
    "on `cxmpute up` the local wallet is funded automatically; otherwise send ETH to {address} "
    "(`cxmpute account whoami` shows it)"
)


@contextmanager
def chain_errors(rpc_url: str, field: str, address: str) -> Iterator[None]:
    """A chain that is down, or refuses a call, as one line naming ``field`` rather than a web3 traceback."""
    import requests
    from web3.exceptions import Web3Exception

    from cxmpute.client import PlatformUnreachable

    try:
        yield
    except requests.ConnectionError:
        raise PlatformUnreachable(f"the chain at {rpc_url} is not answering", field="CXMPUTE_CHAIN_RPC_URL") from None
    except requests.HTTPError as exc:
        if exc.response is not None and exc.response.status_code == 404:
            raise ComputeError(
                f"no chain answers at {rpc_url}: the platform uses an external chain, set "
                "CXMPUTE_CHAIN_RPC_URL to its RPC endpoint",
                field="CXMPUTE_CHAIN_RPC_URL",
            ) from None
        raise ComputeError(
            f"the chain refused the call: {_reason(exc)}; {FUNDING_HINT.format(address=address)}", field=field
        ) from None
    except (requests.RequestException, Web3Exception, ValueError) as exc:
        raise ComputeError(
            f"the chain refused the call: {_reason(exc)}; {FUNDING_HINT.format(address=address)}", field=field
        ) from None


def _reason(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            return str(response.json().get("detail") or response.text)[:300]
        except ValueError:
            return response.text[:300] or str(exc)
    return str(exc)[:300]


def send_to_vault(
    rpc_url: str, vault_address: str, chain_id: int, wallet: Account, function: str, value_wei: int, *, field: str
) -> str:
    """Call the vault's payable ``function`` (``deposit`` or ``stake``) with ``value_wei`` from ``wallet`` on the
    chain at ``rpc_url``; returns the mined transaction's hash for the platform to credit. What the chain refuses
    (too little ETH, a revert, another chain) is a ComputeError naming ``field``."""
    w3 = web3_at(rpc_url)
    address = wallet.address
    with chain_errors(rpc_url, field, address):
        if int(w3.eth.chain_id) != chain_id:
            raise ComputeError(
                f"the chain at {rpc_url} is chain {w3.eth.chain_id}, the platform's is {chain_id}",
                field="CXMPUTE_CHAIN_RPC_URL",
            )
        have = w3.eth.get_balance(address)
        short = ComputeError(
            f"{address} holds {have / 10**18:g} ETH on chain {chain_id}, too little to {function} "
            f"{value_wei / 10**18:g} ETH and pay the gas; {FUNDING_HINT.format(address=address)}",
            field=field,
        )
        if have < value_wei:
            raise short
        vault = w3.eth.contract(address=Web3.to_checksum_address(vault_address), abi=vault_abi())
        tx = getattr(vault.functions, function)().build_transaction(
            {
                "from": address,
                "value": value_wei,
                "chainId": chain_id,
                "gasPrice": w3.eth.gas_price,
                "nonce": w3.eth.get_transaction_count(address, "pending"),
            }
        )
        if have < value_wei + tx["gas"] * tx["gasPrice"]:
            raise short
        signed = wallet.sign_transaction(tx)
        receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction), timeout=120)
    if receipt["status"] != 1:
        raise ComputeError(
            f"the {function} transaction {receipt['transactionHash'].to_0x_hex()} failed on chain", field=field
        )
    return receipt["transactionHash"].to_0x_hex()


def _tx_base(w3: Web3, sender: Account) -> dict:
    return {
        "from": sender.address,
        "nonce": w3.eth.get_transaction_count(sender.address, "pending"),
        "chainId": int(w3.eth.chain_id),
    }


def _send(w3: Web3, sender: Account, tx: dict) -> dict:
    tx.setdefault("gas", int(w3.eth.estimate_gas(tx) * 1.2))
    if "gasPrice" not in tx and "maxFeePerGas" not in tx:
        tx["gasPrice"] = w3.eth.gas_price
    signed = sender.sign_transaction(tx)
    return w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction), timeout=120)


_chain: Chain | None = None
_chain_lock = threading.Lock()


def get_chain() -> Chain:
    global _chain
    with _chain_lock:
        if _chain is None:
            settings = get_settings()
            if settings.chain_rpc_url:
                if not settings.vault_address:
                    raise ComputeError(
                        "CXMPUTE_VAULT_ADDRESS is required with CXMPUTE_CHAIN_RPC_URL",
                        field="vault_address",
                        status_code=503,
                    )
                _chain = Chain(
                    Web3(Web3.HTTPProvider(settings.chain_rpc_url)), settings.vault_address, platform_account()
                )
            else:
                _chain = Chain.in_process()
        return _chain


def reset_chain() -> None:
    global _chain
    with _chain_lock:
        _chain = None

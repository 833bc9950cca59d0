"""`cxmpute account`: who this machine acts as, balances, deposits, history and API keys."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from compute.cli.output import JSON, console, show, table
from compute.cli.vault import eth_text, one_of, to_vault
from cxmpute.client import PlatformClient

app = typer.Typer(help="Who you are, balances, deposits, history, API keys.", no_args_is_help=True)
keys_app = typer.Typer(
    help="API keys: credentials for scripts and other machines, instead of a wallet.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
_SCOPES = typer.Option([], "--scope", help="A scope the key holds (repeatable; default: every scope but 'keys')")


@app.command("login")
def login() -> None:
    """Sign in with the wallet (EIP-4361) and keep the session."""
    with PlatformClient() as api:
        api.sign_in()
        console.print(f"signed in as {api.address}")


@app.command("whoami")
def whoami(as_json: bool = JSON) -> None:
    """The account this machine acts as, the platform and chain it talks to, and its balances."""
    from compute.chain.client import chain_errors, platform_rpc_url, web3_at

    with PlatformClient() as api:
        chain = api.get("/v1/account/chain")
        balance = api.get("/v1/account/balance")
        wallet = api.wallet.address
        rpc = platform_rpc_url(api.base_url)
        with chain_errors(rpc, "CXMPUTE_CHAIN_RPC_URL", wallet):
            wallet_wei = web3_at(rpc).eth.get_balance(wallet)
        info = {
            "address": balance["address"],
            "wallet": wallet,
            "credential": "api key" if api.api_key else "wallet",
            "api_url": api.base_url,
            "chain_rpc_url": rpc,
            "chain_id": chain["chain_id"],
            "vault_address": chain["vault_address"],
            "wallet_eth": eth_text(wallet_wei),
            "user_gwei": balance["user_gwei"],
            "earnings_gwei": balance["earnings_gwei"],
            "stake_gwei": balance["stake_gwei"],
        }
    if as_json:
        show(info)
        return
    rows = Table(show_header=False)
    rows.add_column(no_wrap=True)
    rows.add_column(overflow="fold", no_wrap=False)
    for name, value in info.items():
        rows.add_row(name, str(value))
    console.print(rows)


@app.command("balance")
def balance() -> None:
    """Spendable balance, earnings and stake (gwei)."""
    with PlatformClient() as api:
        show(api.get("/v1/account/balance"))


@app.command("deposit")
def deposit(
    eth: float = typer.Option(None, help="Send this much to the vault, then credit it"),
    tx_hash: str = typer.Option(None, help="Credit a deposit already sent to the vault"),
) -> None:
    """Deposit to the vault on the platform's chain and credit the balance once the receipt is verified."""
    one_of(eth, tx_hash)
    with PlatformClient() as api:
        show(api.post("/v1/account/deposits", json={"tx_hash": tx_hash or to_vault(api, "deposit", eth)}))


@app.command("history")
def history(limit: int = typer.Option(50, min=1, max=1000), as_json: bool = JSON) -> None:
    """Ledger entries touching this account, newest first."""
    with PlatformClient() as api:
        items = api.get("/v1/account/history", params={"limit": limit})
    if as_json:
        show(items)
        return
    rows = table("when", "kind", "account", "gwei", "reference")
    for item in items:
        rows.add_row(
            item["created_at"][:19], item["kind"], item["account"], str(item["amount_gwei"]), item["reference"] or ""
        )
    console.print(rows)


@app.command("withdraw")
def withdraw(
    gwei: int = typer.Argument(..., min=1),
    source: str = typer.Option("user", help="user or earnings"),
    key: str = typer.Option(None, help="Idempotency key (default: a new one)"),
) -> None:
    """Have the platform pay out to the account's address on its chain."""
    import uuid

    with PlatformClient() as api:
        show(
            api.post(
                "/v1/account/withdrawals",
                json={"amount_gwei": gwei, "source": source, "idempotency_key": key or uuid.uuid4().hex},
            )
        )


@keys_app.command("create")
def keys_create(
    name: str = typer.Option("cli", help="A label to tell the key apart in `keys ls`"),
    scope: list[str] = _SCOPES,
    as_json: bool = JSON,
) -> None:
    """Issue an API key. It is shown once: only its hash is kept."""
    body: dict[str, Any] = {"name": name}
    if scope:
        body["scopes"] = scope
    with PlatformClient() as api:
        made = api.post("/v1/auth/keys", json=body)
    if as_json:
        show(made)
        return
    console.print(
        f"API key {made['id']} ({', '.join(made['scopes'])}); it is not shown again. Use it with:\n"
        f"  export CXMPUTE_API_KEY={made['key']}",
        soft_wrap=True,
        highlight=False,
    )


@keys_app.command("ls")
def keys_ls(as_json: bool = JSON) -> None:
    """This account's API keys, revoked ones included."""
    with PlatformClient() as api:
        keys = api.get("/v1/auth/keys")
    if as_json:
        show(keys)
        return
    rows = table("id", "name", "scopes", "created", "revoked")
    for k in keys:
        rows.add_row(k["id"], k["name"], ", ".join(k["scopes"]), k["created_at"][:19], (k["revoked_at"] or "")[:19])
    console.print(rows)


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key's id (`cxmpute account keys ls`)")) -> None:
    """Revoke an API key: it is refused from now on."""
    with PlatformClient() as api:
        revoked = api.delete(f"/v1/auth/keys/{key_id}")
    console.print(f"revoked {revoked['id']} ({revoked['name']})", soft_wrap=True)

"""`cxmpute provider|market|account`: the network from the command line, over the platform API.

Every command goes through the platform client (:mod:`cxmpute.client`), acting as ``CXMPUTE_API_KEY``,
``CXMPUTE_WALLET_KEY`` or else this machine's local wallet. Deposits and stakes are sent to the vault on the
platform's chain: ``CXMPUTE_CHAIN_RPC_URL``, else the embedded chain the platform's API serves. A refusal is not
caught here: the root CLI prints it as one line naming the field.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import time
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from cxmpute.client import PlatformClient, local_wallet
from cxmpute.errors import CxmputeError
from cxmpute.settings import get_settings

provider_app = typer.Typer(help="Register as a provider, stake, publish provisions.", no_args_is_help=True)
provision_app = typer.Typer(help="Your provisions.", no_args_is_help=True)
provider_app.add_typer(provision_app, name="provision")
market_app = typer.Typer(help="Quote and request compute.", no_args_is_help=True)
account_app = typer.Typer(help="Who you are, balances, deposits, history, API keys.", no_args_is_help=True)
keys_app = typer.Typer(
    help="API keys: credentials for scripts and other machines, instead of a wallet.", no_args_is_help=True
)
account_app.add_typer(keys_app, name="keys")
console = Console()
err = Console(stderr=True)
GWEI = 10**9
_JSON = typer.Option(False, "--json", help="Print the platform's answer as JSON")
_SCOPES = typer.Option([], "--scope", help="A scope the key holds (repeatable; default: every scope but 'keys')")
_MODELS = typer.Option([], "--model", help="A model served (repeatable)")
_IMAGES = typer.Option([], "--image", help="An allowed image (repeatable)")
_UNTIL = typer.Option(None, help="Available until (default: indefinitely)")


def _show(data: Any) -> None:
    console.print_json(data=json.loads(json.dumps(data, default=str)))


def _table(*columns: str) -> Table:
    """A table whose cells fold rather than cut: an id or address shortened with an ellipsis cannot be used."""
    table = Table()
    for name in columns:
        table.add_column(name, overflow="fold", no_wrap=False)
    return table


def _wei(eth: float, option: str) -> int:
    try:
        wei = int(Decimal(str(eth)) * 10**18)
    except (InvalidOperation, ValueError, OverflowError):  # nan and inf parse as floats
        raise CxmputeError(f"{eth!r} is not an amount of ETH", field=option) from None
    if wei < GWEI:
        raise CxmputeError("give at least 0.000000001 ETH (1 gwei)", field=option)
    return wei


def _eth(wei: int) -> str:
    text = format(Decimal(wei) / 10**18, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _one_of(eth: float | None, tx_hash: str | None) -> None:
    if (eth is None) == (tx_hash is None):
        raise CxmputeError("give exactly one of --eth or --tx-hash", field="--eth")


def _to_vault(api: PlatformClient, function: str, eth: float) -> str:
    """Send ``eth`` to the vault's ``function`` on the platform's chain from the client's wallet."""
    from compute.chain.client import platform_rpc_url, send_to_vault

    wei = _wei(eth, "--eth")
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


@account_app.command("login")
def login() -> None:
    """Sign in with the wallet (EIP-4361) and keep the session."""
    with PlatformClient() as api:
        api.sign_in()
        console.print(f"signed in as {api.address}")


@account_app.command("whoami")
def whoami(as_json: bool = _JSON) -> None:
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
            "wallet_eth": _eth(wallet_wei),
            "user_gwei": balance["user_gwei"],
            "earnings_gwei": balance["earnings_gwei"],
            "stake_gwei": balance["stake_gwei"],
        }
    if as_json:
        _show(info)
        return
    table = Table(show_header=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold", no_wrap=False)
    for name, value in info.items():
        table.add_row(name, str(value))
    console.print(table)


@account_app.command("balance")
def balance() -> None:
    """Spendable balance, earnings and stake (gwei)."""
    with PlatformClient() as api:
        _show(api.get("/v1/account/balance"))


@account_app.command("deposit")
def deposit(
    eth: float = typer.Option(None, help="Send this much to the vault, then credit it"),
    tx_hash: str = typer.Option(None, help="Credit a deposit already sent to the vault"),
) -> None:
    """Deposit to the vault on the platform's chain and credit the balance once the receipt is verified."""
    _one_of(eth, tx_hash)
    with PlatformClient() as api:
        _show(api.post("/v1/account/deposits", json={"tx_hash": tx_hash or _to_vault(api, "deposit", eth)}))


@account_app.command("history")
def history(limit: int = typer.Option(50, min=1, max=1000), as_json: bool = _JSON) -> None:
    """Ledger entries touching this account, newest first."""
    with PlatformClient() as api:
        items = api.get("/v1/account/history", params={"limit": limit})
    if as_json:
        _show(items)
        return
    table = _table("when", "kind", "account", "gwei", "reference")
    for item in items:
        table.add_row(
            item["created_at"][:19], item["kind"], item["account"], str(item["amount_gwei"]), item["reference"] or ""
        )
    console.print(table)


@account_app.command("withdraw")
def withdraw(
    gwei: int = typer.Argument(..., min=1),
    source: str = typer.Option("user", help="user or earnings"),
    key: str = typer.Option(None, help="Idempotency key (default: a new one)"),
) -> None:
    """Have the platform pay out to the account's address on its chain."""
    import uuid

    with PlatformClient() as api:
        _show(
            api.post(
                "/v1/account/withdrawals",
                json={"amount_gwei": gwei, "source": source, "idempotency_key": key or uuid.uuid4().hex},
            )
        )


@keys_app.command("create")
def keys_create(
    name: str = typer.Option("cli", help="A label to tell the key apart in `keys ls`"),
    scope: list[str] = _SCOPES,
    as_json: bool = _JSON,
) -> None:
    """Issue an API key. It is shown once: only its hash is kept."""
    body: dict[str, Any] = {"name": name}
    if scope:
        body["scopes"] = scope
    with PlatformClient() as api:
        made = api.post("/v1/auth/keys", json=body)
    if as_json:
        _show(made)
        return
    console.print(
        f"API key {made['id']} ({', '.join(made['scopes'])}); it is not shown again. Use it with:\n"
        f"  export CXMPUTE_API_KEY={made['key']}",
        soft_wrap=True,
        highlight=False,
    )


@keys_app.command("ls")
def keys_ls(as_json: bool = _JSON) -> None:
    """This account's API keys, revoked ones included."""
    with PlatformClient() as api:
        keys = api.get("/v1/auth/keys")
    if as_json:
        _show(keys)
        return
    table = _table("id", "name", "scopes", "created", "revoked")
    for k in keys:
        table.add_row(k["id"], k["name"], ", ".join(k["scopes"]), k["created_at"][:19], (k["revoked_at"] or "")[:19])
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key's id (`cxmpute account keys ls`)")) -> None:
    """Revoke an API key: it is refused from now on."""
    with PlatformClient() as api:
        revoked = api.delete(f"/v1/auth/keys/{key_id}")
    console.print(f"revoked {revoked['id']} ({revoked['name']})", soft_wrap=True)


@provider_app.command("register")
def register(name: str = typer.Option(..., help="Shown to users"), region: str = typer.Option("local")) -> None:
    """Detect this machine's hardware, sign the registration with the wallet and register."""
    from compute import receipts
    from compute.providers.hardware import detect
    from compute.runtimes import runtime_registry

    settings = get_settings()
    with PlatformClient() as api:
        info = api.get("/v1/account/chain")
        domain = receipts.Domain(chain_id=info["chain_id"], verifying_contract=info["vault_address"])
        profile = detect(settings.data_dir)
        profile.runtimes = runtime_registry(settings).available()
        issued = int(time.time())
        typed = {
            "provider": api.address,
            "name": name,
            "region": region,
            "profileHash": profile.digest(),
            "issuedAt": issued,
        }
        _show(
            api.post(
                "/v1/providers",
                json={
                    "name": name,
                    "region": region,
                    "profile": profile.model_dump(),
                    "issued_at": issued,
                    "signature": receipts.sign(domain, "ProviderRegistration", typed, api.wallet),
                },
            )
        )


@provider_app.command("stake")
def stake(
    eth: float = typer.Option(None, help="Stake this much in the vault"),
    tx_hash: str = typer.Option(None, help="Credit a stake already sent to the vault"),
) -> None:
    """Stake on the platform's chain and credit it once the receipt is verified."""
    _one_of(eth, tx_hash)
    with PlatformClient() as api:
        _show(api.post("/v1/providers/stake", json={"tx_hash": tx_hash or _to_vault(api, "stake", eth)}))


@provision_app.command("add")
def provision_add(
    kind: str = typer.Option(..., help="vm, container, function, inference or agent"),
    price_gwei: int = typer.Option(..., help="Ask per compute-unit-second"),
    cpu: int = typer.Option(1),
    memory_mb: int = typer.Option(1024),
    gpu_count: int = typer.Option(0),
    gpu_model: str = typer.Option(""),
    disk_gb: int = typer.Option(0),
    model: list[str] = _MODELS,
    image: list[str] = _IMAGES,
    region: str = typer.Option("local"),
    until: datetime = _UNTIL,
    shares_capacity_with: str = typer.Option(
        None, help="Id of your provision on this machine (same resources) whose capacity it shares"
    ),
) -> None:
    """Publish a provision. A kind run by a runtime of the same name (vm, container) needs that runtime here.
    Offers of one machine should share its capacity (--shares-capacity-with), so it is never sold twice."""
    from compute.runtimes import runtime_registry

    registry = runtime_registry(get_settings())
    if kind in registry.names() and (why := registry.runtime(kind).check()) is not None:
        raise CxmputeError(f"this machine cannot run {kind!r}: {why}", field="--kind")
    with PlatformClient() as api:
        _show(
            api.post(
                "/v1/provisions",
                json={
                    "kind": kind,
                    "price_gwei": price_gwei,
                    "models": model,
                    "images": image,
                    "region": region,
                    "available_until": until.isoformat() if until else None,
                    "shares_capacity_with": shares_capacity_with,
                    "resources": {
                        "cpu": cpu,
                        "memory_mb": memory_mb,
                        "gpu_count": gpu_count,
                        "gpu_model": gpu_model,
                        "disk_gb": disk_gb,
                    },
                },
            )
        )


@provision_app.command("ls")
def provision_ls(as_json: bool = _JSON) -> None:
    """Your provisions with free capacity."""
    with PlatformClient() as api:
        provisions = api.get("/v1/provisions")
    if as_json:
        _show(provisions)
        return
    table = _table("id", "kind", "status", "cpu free/total", "memory MiB free", "gpu", "price gwei/CU-s")
    for p in provisions:
        r, f = p["resources"], p["free"]
        table.add_row(
            p["id"],
            p["kind"],
            p["status"],
            f"{f['cpu']}/{r['cpu']}",
            str(f["memory_mb"]),
            f"{f['gpu_count']}x{r['gpu_model']}" if r["gpu_count"] else "-",
            str(p["price_gwei"]),
        )
    console.print(table)


def _request(
    kind: str,
    price_max: int,
    price_min: int,
    duration_s: int | None,
    term: str,
    cpu: int,
    memory_mb: int,
    gpu_count: int,
    gpu_model: str,
    model: str | None,
    image: str | None,
    region: str | None,
    provision: str | None = None,
) -> dict:
    return {
        "provision_id": provision,
        "kind": kind,
        "price_min_gwei": price_min,
        "price_max_gwei": price_max,
        "term": term,
        "duration_s": duration_s,
        "model": model,
        "image": image,
        "region": region,
        "resources": {"cpu": cpu, "memory_mb": memory_mb, "gpu_count": gpu_count, "gpu_model": gpu_model},
    }


_KIND = typer.Option(..., help="vm, container, function, inference or agent")
_MAX = typer.Option(..., help="Highest ask accepted, gwei per CU-second")
_PROVISION = typer.Option(None, help="Only this provision (an id from GET /v1/market/provisions)")


@market_app.command("quote")
def quote(
    kind: str = _KIND,
    price_max: int = _MAX,
    price_min: int = typer.Option(0),
    duration_s: int = typer.Option(None),
    term: str = typer.Option("seconds", help="seconds, hour or month"),
    cpu: int = typer.Option(1),
    memory_mb: int = typer.Option(1024),
    gpu_count: int = typer.Option(0),
    gpu_model: str = typer.Option(""),
    model: str = typer.Option(None),
    image: str = typer.Option(None),
    region: str = typer.Option(None),
    provision: str = _PROVISION,
) -> None:
    """What a request would get and cost, or why nothing matches."""
    with PlatformClient() as api:
        _show(
            api.post(
                "/v1/market/quote",
                json=_request(
                    kind,
                    price_max,
                    price_min,
                    duration_s,
                    term,
                    cpu,
                    memory_mb,
                    gpu_count,
                    gpu_model,
                    model,
                    image,
                    region,
                    provision,
                ),
            )
        )


@market_app.command("request")
def request(
    kind: str = _KIND,
    price_max: int = _MAX,
    price_min: int = typer.Option(0),
    duration_s: int = typer.Option(None),
    term: str = typer.Option("seconds", help="seconds, hour or month"),
    cpu: int = typer.Option(1),
    memory_mb: int = typer.Option(1024),
    gpu_count: int = typer.Option(0),
    gpu_model: str = typer.Option(""),
    model: str = typer.Option(None),
    image: str = typer.Option(None),
    region: str = typer.Option(None),
    provision: str = _PROVISION,
) -> None:
    """Match and open a lease (escrow held, or the first rental term billed)."""
    with PlatformClient() as api:
        # A 409 "no provision matches" carries in its one line why each provision was passed over (no_match).
        _show(
            api.post(
                "/v1/market/requests",
                json=_request(
                    kind,
                    price_max,
                    price_min,
                    duration_s,
                    term,
                    cpu,
                    memory_mb,
                    gpu_count,
                    gpu_model,
                    model,
                    image,
                    region,
                    provision,
                ),
            )
        )


@provider_app.command("start")
def start(
    name: str = typer.Option(..., help="Shown to users"),
    price_gwei: int = typer.Option(..., min=1, help="Ask per compute-unit-second"),
    cpu: int = typer.Option(1, min=1, help="vCPU cores offered"),
    memory_mb: int = typer.Option(1024, min=1, help="Memory offered, MiB"),
    gpu_count: int = typer.Option(0, min=0),
    gpu_model: str = typer.Option(""),
    disk_gb: int = typer.Option(0, min=0),
    region: str = typer.Option("local"),
    stake_eth: float = typer.Option(0.0, min=0, help="Hold at least this much stake (topped up on chain)"),
    concurrency: int = typer.Option(4, min=1, help="Jobs run at once"),
    work_pool: str = typer.Option(None, help="Also run flow runs from this provider's queue of a work pool"),
) -> None:
    """Join the network and run matched work until stopped (Ctrl-C or SIGTERM).

    Signs in with the wallet (CXMPUTE_WALLET_KEY, else this machine's local wallet), registers this machine,
    tops up the stake, publishes an agent provision, heartbeats, and serves the jobs the platform pushes over
    the job stream it opens to CXMPUTE_API_URL. With --work-pool it also runs flow runs of that pool from the
    Prefect server at PREFECT_API_URL. Other machines join the same way, pointing CXMPUTE_API_URL (and for
    --work-pool, PREFECT_API_URL) at the platform.
    """
    import asyncio
    import logging

    from prefect.settings import PREFECT_API_URL

    from compute.provisions import Resources
    from compute.worker.provider import Offer, ProviderWorker

    if work_pool and not PREFECT_API_URL.value():
        raise CxmputeError(
            "set PREFECT_API_URL to the platform's Prefect server (--work-pool runs its flow runs)",
            field="PREFECT_API_URL",
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    offer = Offer(
        name=name,
        region=region,
        price_gwei=price_gwei,
        stake_gwei=int(stake_eth * GWEI),
        concurrency=concurrency,
        work_pool=work_pool,
        resources=Resources(cpu=cpu, memory_mb=memory_mb, gpu_count=gpu_count, gpu_model=gpu_model, disk_gb=disk_gb),
    )
    worker = ProviderWorker(settings.resolved_api_url, local_wallet(settings), offer, settings.chain_rpc_url)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    console.print(f"provider {worker.address} joining {settings.resolved_api_url}")
    try:
        asyncio.run(worker.run())
    except KeyboardInterrupt:
        console.print(f"stopped after {worker.ran} jobs")
    # Prefect's clients leave non-daemon threads behind (log and event senders) that keep a stopped worker alive
    # forever; jobs it had not finished are dispatched again by the platform anyway.
    atexit._run_exitfuncs()  # what exit would run (warm sandboxes are closed there), without the thread join
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

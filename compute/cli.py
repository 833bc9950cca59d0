"""`cxmpute provider|market|account`: the network from the command line, over the platform API.

The wallet key comes from ``CXMPUTE_WALLET_KEY``; the CLI signs in with it (EIP-4361) on first use and
keeps the session token in the data directory. Deposits and stakes are sent to the vault on the
configured chain (``CXMPUTE_CHAIN_RPC_URL``; the in-process chain only exists inside the API's process).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import typer
from eth_account import Account
from eth_account.messages import encode_defunct
from rich.console import Console
from rich.table import Table

from compute import receipts
from compute.chain import get_chain
from compute.identity import siwe
from compute.providers.hardware import detect
from compute.runtimes import runtime_registry
from cxmpute.http import client
from cxmpute.settings import get_settings

provider_app = typer.Typer(help="Register as a provider, stake, publish provisions.", no_args_is_help=True)
provision_app = typer.Typer(help="Your provisions.", no_args_is_help=True)
provider_app.add_typer(provision_app, name="provision")
market_app = typer.Typer(help="Quote and request compute.", no_args_is_help=True)
account_app = typer.Typer(help="Sign in, balances, deposits, history.", no_args_is_help=True)
console = Console()
GWEI = 10**9


def _wallet() -> Account:
    key = get_settings().wallet_key
    if not key:
        raise typer.BadParameter("set CXMPUTE_WALLET_KEY to your wallet's private key", param_hint="wallet")
    return Account.from_key(key)


def _session_file() -> Path:
    return get_settings().data_dir / "session.json"


def _login() -> str:
    wallet = _wallet()
    settings = get_settings()
    with client(settings.resolved_api_url) as http:
        nonce = siwe.Nonce(**_ok(http.get("/v1/auth/nonce")))
        info = _ok(http.get("/v1/account/chain"))
        message = siwe.message_for(wallet.address, nonce, info["chain_id"]).text()
        signature = wallet.sign_message(encode_defunct(text=message)).signature.to_0x_hex()
        session = _ok(http.post("/v1/auth/verify", json={"message": message, "signature": signature}))
    _session_file().write_text(json.dumps({"api": settings.resolved_api_url, "address": wallet.address,
                                           "token": session["token"]}))
    _session_file().chmod(0o600)
    return session["token"]


def _token() -> str:
    path = _session_file()
    if path.exists():
        saved = json.loads(path.read_text())
        wallet = _wallet()
        if saved.get("api") == get_settings().resolved_api_url and saved.get("address") == wallet.address:
            return saved["token"]
    return _login()


def _call(method: str, path: str, body: dict | None = None, params: dict | None = None) -> Any:
    for attempt in range(2):
        with client(get_settings().resolved_api_url, headers={"Authorization": f"Bearer {_token()}"}) as http:
            resp = http.request(method, path, json=body, params=params)
        if resp.status_code == 401 and attempt == 0:
            _session_file().unlink(missing_ok=True)  # expired or revoked session: sign in again
            continue
        return _ok(resp)


def _ok(resp: httpx.Response) -> Any:
    if resp.is_success:
        return resp.json() if resp.content else None
    try:
        detail = resp.json()
    except ValueError:
        detail = {"detail": resp.text}
    console.print(f"[red]error {resp.status_code}[/red]: {detail.get('detail')}")
    if detail.get("no_match"):
        console.print_json(data=detail["no_match"])
    raise typer.Exit(1)


def _show(data: Any) -> None:
    console.print_json(data=json.loads(json.dumps(data, default=str)))


def _send_to_vault(function: str, eth: float) -> str:
    wallet = _wallet()
    chain = get_chain()
    w3 = chain.w3
    tx = getattr(chain.vault.functions, function)().build_transaction(
        {"from": wallet.address, "value": int(eth * 10**18), "chainId": chain.chain_id,
         "nonce": w3.eth.get_transaction_count(wallet.address, "pending"), "gasPrice": w3.eth.gas_price})
    signed = wallet.sign_transaction(tx)
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction), timeout=120)
    return receipt["transactionHash"].to_0x_hex()


@account_app.command("login")
def login() -> None:
    """Sign in with the wallet (EIP-4361) and keep the session."""
    _login()
    console.print(f"signed in as {_wallet().address}")


@account_app.command("balance")
def balance() -> None:
    """Spendable balance, earnings and stake (gwei)."""
    _show(_call("GET", "/v1/account/balance"))


@account_app.command("deposit")
def deposit(eth: float = typer.Option(None, help="Send this much to the vault, then credit it"),
            tx_hash: str = typer.Option(None, help="Credit a deposit already sent to the vault")) -> None:
    """Deposit to the vault on chain and credit the balance once the receipt is verified."""
    if (eth is None) == (tx_hash is None):
        raise typer.BadParameter("give exactly one of --eth or --tx-hash", param_hint="--eth")
    _show(_call("POST", "/v1/account/deposits", {"tx_hash": tx_hash or _send_to_vault("deposit", eth)}))


@account_app.command("history")
def history(limit: int = typer.Option(50, min=1, max=1000)) -> None:
    """Ledger entries touching this account, newest first."""
    table = Table("when", "kind", "account", "gwei", "reference")
    for item in _call("GET", "/v1/account/history", params={"limit": limit}):
        table.add_row(item["created_at"][:19], item["kind"], item["account"], str(item["amount_gwei"]),
                      item["reference"] or "")
    console.print(table)


@account_app.command("withdraw")
def withdraw(gwei: int = typer.Argument(..., min=1), source: str = typer.Option("user", help="user or earnings"),
             key: str = typer.Option(None, help="Idempotency key (default: a new one)")) -> None:
    """Pay out to the wallet's address on chain."""
    import uuid

    _show(_call("POST", "/v1/account/withdrawals", {"amount_gwei": gwei, "source": source,
                                                     "idempotency_key": key or uuid.uuid4().hex}))


@provider_app.command("register")
def register(name: str = typer.Option(..., help="Shown to users"), region: str = typer.Option("local")) -> None:
    """Detect this machine's hardware, sign the registration with the wallet and register."""
    wallet = _wallet()
    info = _call("GET", "/v1/account/chain")
    domain = receipts.Domain(chain_id=info["chain_id"], verifying_contract=info["vault_address"])
    profile = detect(get_settings().data_dir)
    profile.runtimes = runtime_registry(get_settings()).available()
    issued = int(time.time())
    typed = {"provider": wallet.address, "name": name, "region": region, "profileHash": profile.digest(),
             "issuedAt": issued}
    _show(_call("POST", "/v1/providers", {"name": name, "region": region, "profile": profile.model_dump(),
                                          "issued_at": issued,
                                          "signature": receipts.sign(domain, "ProviderRegistration", typed, wallet)}))


@provider_app.command("stake")
def stake(eth: float = typer.Option(None, help="Stake this much in the vault"),
          tx_hash: str = typer.Option(None, help="Credit a stake already sent to the vault")) -> None:
    """Stake on chain and credit it once the receipt is verified."""
    if (eth is None) == (tx_hash is None):
        raise typer.BadParameter("give exactly one of --eth or --tx-hash", param_hint="--eth")
    _show(_call("POST", "/v1/providers/stake", {"tx_hash": tx_hash or _send_to_vault("stake", eth)}))


@provision_app.command("add")
def provision_add(kind: str = typer.Option(..., help="vm, container, function, inference or agent"),
                  price_gwei: int = typer.Option(..., help="Ask per compute-unit-second"),
                  cpu: int = typer.Option(1), memory_mb: int = typer.Option(1024), gpu_count: int = typer.Option(0),
                  gpu_model: str = typer.Option(""), disk_gb: int = typer.Option(0),
                  model: list[str] = typer.Option([], help="A model served (repeatable)"),
                  image: list[str] = typer.Option([], help="An allowed image (repeatable)"),
                  region: str = typer.Option("local"),
                  until: datetime = typer.Option(None, help="Available until (default: indefinitely)"),
                  shares_capacity_with: str = typer.Option(
                      None, help="Id of your provision on this machine (same resources) whose capacity it shares")
                  ) -> None:
    """Publish a provision. A kind run by a runtime of the same name (vm, container) needs that runtime here.
    Offers of one machine should share its capacity (--shares-capacity-with), so it is never sold twice."""
    registry = runtime_registry(get_settings())
    if kind in registry.names() and (why := registry.runtime(kind).check()) is not None:
        raise typer.BadParameter(f"this machine cannot run {kind!r}: {why}", param_hint="--kind")
    _show(_call("POST", "/v1/provisions", {
        "kind": kind, "price_gwei": price_gwei, "models": model, "images": image, "region": region,
        "available_until": until.isoformat() if until else None, "shares_capacity_with": shares_capacity_with,
        "resources": {"cpu": cpu, "memory_mb": memory_mb, "gpu_count": gpu_count, "gpu_model": gpu_model,
                      "disk_gb": disk_gb}}))


@provision_app.command("ls")
def provision_ls() -> None:
    """Your provisions with free capacity."""
    table = Table("id", "kind", "status", "cpu free/total", "memory MiB free", "gpu", "price gwei/CU-s")
    for p in _call("GET", "/v1/provisions"):
        r, f = p["resources"], p["free"]
        table.add_row(p["id"], p["kind"], p["status"], f"{f['cpu']}/{r['cpu']}", str(f["memory_mb"]),
                      f"{f['gpu_count']}x{r['gpu_model']}" if r["gpu_count"] else "-", str(p["price_gwei"]))
    console.print(table)


def _request(kind: str, price_max: int, price_min: int, duration_s: int | None, term: str, cpu: int, memory_mb: int,
             gpu_count: int, gpu_model: str, model: str | None, image: str | None, region: str | None) -> dict:
    return {"kind": kind, "price_min_gwei": price_min, "price_max_gwei": price_max, "term": term,
            "duration_s": duration_s, "model": model, "image": image, "region": region,
            "resources": {"cpu": cpu, "memory_mb": memory_mb, "gpu_count": gpu_count, "gpu_model": gpu_model}}


_KIND = typer.Option(..., help="vm, container, function, inference or agent")
_MAX = typer.Option(..., help="Highest ask accepted, gwei per CU-second")


@market_app.command("quote")
def quote(kind: str = _KIND, price_max: int = _MAX, price_min: int = typer.Option(0),
          duration_s: int = typer.Option(None), term: str = typer.Option("seconds", help="seconds, hour or month"),
          cpu: int = typer.Option(1), memory_mb: int = typer.Option(1024), gpu_count: int = typer.Option(0),
          gpu_model: str = typer.Option(""), model: str = typer.Option(None), image: str = typer.Option(None),
          region: str = typer.Option(None)) -> None:
    """What a request would get and cost, or why nothing matches."""
    _show(_call("POST", "/v1/market/quote", _request(kind, price_max, price_min, duration_s, term, cpu, memory_mb,
                                                     gpu_count, gpu_model, model, image, region)))


@market_app.command("request")
def request(kind: str = _KIND, price_max: int = _MAX, price_min: int = typer.Option(0),
            duration_s: int = typer.Option(None), term: str = typer.Option("seconds", help="seconds, hour or month"),
            cpu: int = typer.Option(1), memory_mb: int = typer.Option(1024), gpu_count: int = typer.Option(0),
            gpu_model: str = typer.Option(""), model: str = typer.Option(None), image: str = typer.Option(None),
            region: str = typer.Option(None)) -> None:
    """Match and open a lease (escrow held, or the first rental term billed)."""
    _show(_call("POST", "/v1/market/requests", _request(kind, price_max, price_min, duration_s, term, cpu, memory_mb,
                                                        gpu_count, gpu_model, model, image, region)))


@provider_app.command("start")
def start(name: str = typer.Option(..., help="Shown to users"),
          price_gwei: int = typer.Option(..., min=1, help="Ask per compute-unit-second"),
          cpu: int = typer.Option(1, min=1, help="vCPU cores offered"),
          memory_mb: int = typer.Option(1024, min=1, help="Memory offered, MiB"),
          gpu_count: int = typer.Option(0, min=0), gpu_model: str = typer.Option(""),
          disk_gb: int = typer.Option(0, min=0), region: str = typer.Option("local"),
          stake_eth: float = typer.Option(0.0, min=0, help="Hold at least this much stake (topped up on chain)"),
          concurrency: int = typer.Option(4, min=1, help="Jobs run at once"),
          work_pool: str = typer.Option(None, help="Also run flow runs from this provider's queue of a work pool")
          ) -> None:
    """Join the network and run matched work until stopped (Ctrl-C or SIGTERM).

    Signs in with CXMPUTE_WALLET_KEY, registers this machine, tops up the stake, publishes an agent
    provision, heartbeats, and serves the jobs the platform dispatches here through the Prefect server
    at PREFECT_API_URL. Other machines join the same way, pointing CXMPUTE_API_URL and PREFECT_API_URL at
    the platform.
    """
    import asyncio
    import logging

    from prefect.settings import PREFECT_API_URL
    from prefect.task_worker import StopTaskWorker

    from compute.provisions import Resources
    from compute.worker.provider import Offer, ProviderWorker

    if not PREFECT_API_URL.value():
        raise typer.BadParameter("set PREFECT_API_URL to the platform's Prefect server", param_hint="PREFECT_API_URL")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    offer = Offer(name=name, region=region, price_gwei=price_gwei, stake_gwei=int(stake_eth * GWEI),
                  concurrency=concurrency, work_pool=work_pool,
                  resources=Resources(cpu=cpu, memory_mb=memory_mb, gpu_count=gpu_count, gpu_model=gpu_model,
                                      disk_gb=disk_gb))
    worker = ProviderWorker(settings.resolved_api_url, _wallet(), offer, settings.chain_rpc_url)
    def stop(signum: int, frame: object) -> None:  # until the task worker installs its own graceful handler
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    console.print(f"provider {worker.address} joining {settings.resolved_api_url}")
    try:
        asyncio.run(worker.run())
    except (KeyboardInterrupt, StopTaskWorker):
        console.print(f"stopped after {worker.ran} jobs")
    # Prefect's task worker leaves non-daemon threads behind (its executor, log and event senders) that keep a
    # stopped worker alive forever; jobs it had not finished are dispatched again by the platform anyway.
    atexit._run_exitfuncs()  # what exit would run (warm sandboxes are closed there), without the thread join
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

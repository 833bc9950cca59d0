"""`cxmpute provider`: register this machine, stake, publish provisions, and run matched work."""

from __future__ import annotations

import atexit
import os
import signal
import sys
import time
from datetime import datetime

import typer

from compute.cli.output import JSON, console, show, table
from compute.cli.vault import GWEI, one_of, to_vault
from cxmpute.client import PlatformClient, local_wallet
from cxmpute.errors import CxmputeError
from cxmpute.settings import get_settings

app = typer.Typer(help="Register as a provider, stake, publish provisions.", no_args_is_help=True)
provision_app = typer.Typer(help="Your provisions.", no_args_is_help=True)
app.add_typer(provision_app, name="provision")
_MODELS = typer.Option([], "--model", help="A model served (repeatable)")
_IMAGES = typer.Option([], "--image", help="An allowed image (repeatable)")
_UNTIL = typer.Option(None, help="Available until (default: indefinitely)")


@app.command("register")
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
        show(
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


@app.command("stake")
def stake(
    eth: float = typer.Option(None, help="Stake this much in the vault"),
    tx_hash: str = typer.Option(None, help="Credit a stake already sent to the vault"),
) -> None:
    """Stake on the platform's chain and credit it once the receipt is verified."""
    one_of(eth, tx_hash)
    with PlatformClient() as api:
        show(api.post("/v1/providers/stake", json={"tx_hash": tx_hash or to_vault(api, "stake", eth)}))


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
        show(
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
def provision_ls(as_json: bool = JSON) -> None:
    """Your provisions with free capacity."""
    with PlatformClient() as api:
        provisions = api.get("/v1/provisions")
    if as_json:
        show(provisions)
        return
    rows = table("id", "kind", "status", "cpu free/total", "memory MiB free", "gpu", "price gwei/CU-s")
    for p in provisions:
        r, f = p["resources"], p["free"]
        rows.add_row(
            p["id"],
            p["kind"],
            p["status"],
            f"{f['cpu']}/{r['cpu']}",
            str(f["memory_mb"]),
            f"{f['gpu_count']}x{r['gpu_model']}" if r["gpu_count"] else "-",
            str(p["price_gwei"]),
        )
    console.print(rows)


@app.command("start")
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

"""`cxmpute up` (the whole platform on one machine) and `cxmpute serve` (the API alone)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import typer
from rich.console import Console

from cxmpute.settings import get_settings

app = typer.Typer()
console = Console(stderr=True)
LOCAL_POOL = "cxmpute-network"  # the pool deploy/prefect.yaml's deployments target
LOCAL_STAKE_ETH = 2


def _serve(host: str, port: int) -> None:
    import uvicorn

    from flows.runner import reap_orphans

    try:
        reaped = reap_orphans()
    except Exception as exc:  # an unreachable Prefect API must not stop the API from starting
        console.print(f"[yellow]could not check for orphaned runs: {exc}[/yellow]")
    else:
        if reaped:
            console.print(f"marked {len(reaped)} run(s) left by a stopped process as crashed")

    uvicorn.run("web.app:create_app", factory=True, host=host, port=port, log_level="info")


def _start_local_provider(api_url: str, prefect_api: str, work_pool: str, started: list[subprocess.Popen]) -> None:
    """Fund a provider wallet of this machine from the embedded chain's dev account (a development method:
    sent with the operator credential) and start its worker. The key is kept in the data dir, so the same
    provider (and its stake) comes back on the next start."""
    from eth_account import Account

    from compute.chain.client import web3_at

    settings = get_settings()
    home = settings.data_dir / "local-provider"
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_file = home / "wallet.key"
    if not key_file.exists():
        key_file.write_text(Account.create().key.to_0x_hex())
        key_file.chmod(0o600)
    key = key_file.read_text().strip()
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{api_url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            console.print("[yellow]the API did not answer: no local provider worker[/yellow]")
            return
        time.sleep(0.5)
    w3 = web3_at(f"{api_url}/v1/chain/rpc", settings.resolved_operator_token())
    address = Account.from_key(key).address
    need = LOCAL_STAKE_ETH * 2 * 10**18
    if w3.eth.get_balance(address) < need:
        w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction(
            {"from": w3.eth.accounts[0], "to": address, "value": need}))
    cpu = max(1, (os.cpu_count() or 2) // 2)
    # The worker is a provider like any other: it never holds the operator's credential.
    env = {**{k: v for k, v in os.environ.items() if k != "CXMPUTE_OPERATOR_TOKEN"}, "CXMPUTE_HOME": str(home),
           "CXMPUTE_WALLET_KEY": key, "CXMPUTE_API_URL": api_url, "PREFECT_API_URL": prefect_api,
           "PREFECT_HOME": str(home / "prefect")}
    log = open(home / "worker.log", "ab")
    started.append(subprocess.Popen(
        [sys.executable, "-m", "cxmpute.cli", "provider", "start", "--name", "local", "--price-gwei", "1",
         "--cpu", str(cpu), "--memory-mb", "2048", "--stake-eth", str(LOCAL_STAKE_ETH), "--work-pool", work_pool],
        env=env, stdout=log, stderr=subprocess.STDOUT))
    console.print(f"  local provider   {address} (pool {work_pool}, log {home / 'worker.log'})")


def _check_prefect_credential(api: str) -> None:
    from flows.server import refused

    if refused(api):
        raise typer.BadParameter(f"the Prefect server at {api} refuses this platform's credential: set "
                                 "PREFECT_API_AUTH_STRING to its auth string", param_hint="PREFECT_API_AUTH_STRING")


@app.command("up")
def up(
    host: str = typer.Option(None, help="API host (default CXMPUTE_API_HOST, 127.0.0.1)"),
    port: int = typer.Option(None, help="API port (default CXMPUTE_API_PORT, 8000)"),
    provider: bool = typer.Option(True, help="Also run a provider worker on this machine (embedded chain only)"),
    work_pool: str = typer.Option(LOCAL_POOL, help="Work pool whose flow runs (deployments) the local provider runs"),
) -> None:
    """Start the platform: a Prefect server on SQLite in the data dir, on 127.0.0.1 and answering only callers
    with the auth string kept there (or the one PREFECT_API_URL names, with PREFECT_API_AUTH_STRING), the API
    with the builder on 127.0.0.1:8000, which runs workflows, and a local provider worker that runs network
    nodes and scheduled deployments. Ctrl-C stops everything."""
    from flows.server import find_api, start_server, stop_server, use_api

    settings = get_settings()
    host, port = host or settings.api_host, port or settings.api_port
    prefect_proc: subprocess.Popen | None = None
    api = settings.prefect_api_url or find_api(f"http://127.0.0.1:{settings.prefect_port}/api")
    if api is None:
        console.print(f"starting Prefect server on 127.0.0.1:{settings.prefect_port} (data in {settings.data_dir})")
        prefect_proc = start_server(settings.data_dir / "prefect-server", settings.prefect_port)
        api = f"http://127.0.0.1:{settings.prefect_port}/api"
        # the server started here knows no API key: its clients send the auth string it was started with
        os.environ.pop("PREFECT_API_KEY", None)
    else:
        _check_prefect_credential(api)
    use_api(api)
    console.print(f"[bold]Cxmpute is up[/bold]\n  API and builder  http://{host}:{port}/\n"
                  f"  API docs         http://{host}:{port}/docs\n  Prefect API      {api}\n"
                  f"  data             {settings.data_dir}\nCtrl-C to stop.")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    local: list[subprocess.Popen] = []
    if provider and settings.chain_rpc_url is None:
        threading.Thread(target=_start_local_provider, args=(f"http://127.0.0.1:{port}", api, work_pool, local),
                         daemon=True, name="local-provider").start()
    try:
        _serve(host, port)
    except KeyboardInterrupt:
        pass
    finally:
        for proc in local:
            console.print("stopping the local provider worker")
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if prefect_proc is not None:
            console.print("stopping Prefect server")
            stop_server(prefect_proc)


@app.command("serve")
def serve(host: str = typer.Option(None), port: int = typer.Option(None)) -> None:
    """Serve the API alone, against PREFECT_API_URL (with PREFECT_API_AUTH_STRING, or the data dir's)."""
    from flows.server import use_api

    settings = get_settings()
    api = os.environ.get("PREFECT_API_URL") or settings.prefect_api_url
    if api:
        _check_prefect_credential(api)
        use_api(api)
    _serve(host or settings.api_host, port or settings.api_port)

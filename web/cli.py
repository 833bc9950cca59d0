"""`cxmpute up` (the whole platform on one machine) and `cxmpute serve` (the API alone)."""

from __future__ import annotations

import asyncio
import copy
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import typer
from rich.console import Console

from cxmpute.client import local_address
from cxmpute.errors import CxmputeError
from cxmpute.settings import get_settings
from web.supervisor import Supervised, Supervisor

app = typer.Typer()
console = Console(stderr=True, soft_wrap=True)  # a path or URL wrapped in two is no use to copy
LOCAL_POOL = "cxmpute-network"  # the pool deploy/prefect.yaml's deployments target
LOCAL_STAKE_ETH = 2
LOCAL_WALLET_ETH = 100  # what the local wallet starts with on the embedded chain
LOCAL_DISK_GB = 20
GRACEFUL_SHUTDOWN_S = 5
# A client told to come back after Retry-After (5 s for a full run queue or an absent Prefect server) reuses its
# connection then; were the server to close idle connections at the same moment (uvicorn's default is 5 s), the
# retry would die on a reset connection. Idle connections are kept well past any Retry-After the API gives.
KEEP_ALIVE_S = 30


def _serve(host: str, port: int, before_shutdown: Callable[[], None] | None = None) -> None:
    """Serve the API until Ctrl-C or SIGTERM; then run ``before_shutdown`` while the API still answers (`up`
    stops its children there: a provider worker reports its last results, then closes its job stream, which
    would otherwise hold the shutdown open), then drain the requests in flight."""
    import uvicorn
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings
    from uvicorn.config import LOGGING_CONFIG

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            if before_shutdown is not None:
                await asyncio.to_thread(before_shutdown)
            await super().shutdown(sockets)

    # The platform's own lines (a refused request, a server error) beside uvicorn's, in its format.
    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["loggers"]["cxmpute"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    # Long-lived requests that outlast the children (a browser's run event stream) are cut after a grace period.
    server = Server(
        uvicorn.Config(
            "web.app:create_app",
            factory=True,
            host=host,
            port=port,
            log_level="info",
            log_config=log_config,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            timeout_keep_alive=KEEP_ALIVE_S,
        )
    )
    # A request that reaches for an absent Prefect server fails at once and answers 503 naming it (web.errors):
    # Prefect's client would retry a lost connection for a minute, holding the request. Only the API's
    # requests, which inherit this context; the executors, which must ride out a restart, keep the retries.
    try:
        with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}):
            server.run()
    except KeyboardInterrupt:  # the signal uvicorn passes on once it has stopped: a clean stop, as uvicorn.run's
        pass
    if not server.started:
        raise typer.Exit(3)  # the API could not start (its own lines say why), as uvicorn.run exits


def _wait_for_api(api_url: str, seconds: float = 120) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api_url}/healthz", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def _fund(api_url: str, address: str, eth: int, below: int) -> None:
    """Send ``eth`` to ``address`` from the embedded chain's dev account when it holds less than ``below``
    ETH: a development method, sent through the API's chain RPC with the operator credential."""
    from compute.chain.client import web3_at

    w3 = web3_at(f"{api_url}/v1/chain/rpc", get_settings().resolved_operator_token())
    if w3.eth.get_balance(address) < below * 10**18:
        w3.eth.wait_for_transaction_receipt(
            w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": address, "value": eth * 10**18})
        )


def _offered_disk_gb(home: Path) -> int:
    """Disk the local provider offers: half the data dir's free space, at most LOCAL_DISK_GB. Chosen once and
    kept, since a provider that comes back with other resources publishes a second provision beside its
    first, and the machine would be sold twice."""
    chosen = home / "disk_gb"
    if not chosen.exists():
        free_gb = shutil.disk_usage(home).free // 2**30
        chosen.write_text(str(min(LOCAL_DISK_GB, free_gb // 2)))
    return int(chosen.read_text())


def _child(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """A platform process `up` supervises. Its own session keeps Ctrl-C for `up`, which stops its children in
    order (a child that the terminal stopped first would be restarted); the death signal keeps a killed `up`
    from leaving it behind."""
    from flows.server import die_with_parent

    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )


def _executor() -> Supervised:
    """The executor that runs this platform's workflow runs, with the API's environment: its Prefect API and
    credential (after ``use_api``) and the same CXMPUTE_* settings."""
    log_path = get_settings().data_dir / "executor.log"
    argv = [sys.executable, "-m", "cxmpute.cli", "executor", "start"]
    return Supervised("executor", start=lambda: _child(argv, dict(os.environ), log_path))


def _local_provider(api_url: str, prefect_api: str, work_pool: str) -> Supervised:
    """Fund a provider wallet of this machine from the embedded chain's dev account; the worker that runs as it.
    The key is kept in the data dir, so the same provider (and its stake) comes back on the next start."""
    from eth_account import Account

    home = get_settings().data_dir / "local-provider"
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_file = home / "wallet.key"
    if not key_file.exists():
        key_file.write_text(Account.create().key.to_0x_hex())
        key_file.chmod(0o600)
    key = key_file.read_text().strip()
    address = Account.from_key(key).address
    _fund(api_url, address, LOCAL_STAKE_ETH * 2, below=LOCAL_STAKE_ETH * 2)
    cpu = max(1, (os.cpu_count() or 2) // 2)
    # The worker is a provider like any other: it never holds the operator's credential.
    env = {
        **{k: v for k, v in os.environ.items() if k != "CXMPUTE_OPERATOR_TOKEN"},
        "CXMPUTE_HOME": str(home),
        "CXMPUTE_WALLET_KEY": key,
        "CXMPUTE_API_URL": api_url,
        "PREFECT_API_URL": prefect_api,
        "PREFECT_HOME": str(home / "prefect"),
    }
    argv = [
        sys.executable,
        "-m",
        "cxmpute.cli",
        "provider",
        "start",
        "--name",
        "local",
        "--price-gwei",
        "1",
        "--cpu",
        str(cpu),
        "--memory-mb",
        "2048",
        "--disk-gb",
        str(_offered_disk_gb(home)),
        "--stake-eth",
        str(LOCAL_STAKE_ETH),
        "--work-pool",
        work_pool,
    ]
    console.print(f"  local provider   {address} (pool {work_pool}, log {home / 'worker.log'})")
    return Supervised("local provider worker", start=lambda: _child(argv, env, home / "worker.log"))


def _when_listening(
    api_url: str,
    banner: str,
    embedded_chain: bool,
    provider: bool,
    prefect_api: str,
    work_pool: str,
    supervisor: Supervisor,
) -> None:
    """Once the API answers (its database migrated): start the executor, fund the local wallet (on the
    embedded chain), say the platform is up, then start the local provider."""
    if not _wait_for_api(api_url):
        console.print(
            "[yellow]the API did not answer within 120 s: no executor, no local wallet funds, no local "
            "provider worker[/yellow]"
        )
        return
    supervisor.add(_executor())
    from web3.exceptions import Web3Exception

    chain_failed = (OSError, ValueError, Web3Exception)  # the chain's RPC unreachable or refusing the transfer
    if embedded_chain:
        try:
            _fund(api_url, local_address(), LOCAL_WALLET_ETH, below=LOCAL_WALLET_ETH // 10)
        except chain_failed as exc:  # the platform still serves; only the wallet's starting funds are missing
            console.print(f"[yellow]could not fund the local wallet: {exc}[/yellow]")
    console.print(banner)
    if provider and embedded_chain:
        try:
            supervisor.add(_local_provider(api_url, prefect_api, work_pool))
        except chain_failed as exc:  # the platform still serves, without a provider of its own
            console.print(f"[yellow]could not start the local provider: {exc}[/yellow]")


def _port_taken(host: str, port: int) -> bool:
    # SO_REUSEADDR as uvicorn binds: a port left in TIME_WAIT is free to it, one with a listener is not.
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _check_prefect_credential(api: str) -> None:
    from flows.server import refused

    if refused(api):
        raise CxmputeError(
            f"the Prefect server at {api} refuses this platform's credential: set "
            "PREFECT_API_AUTH_STRING to its auth string",
            field="PREFECT_API_AUTH_STRING",
        )


@app.command("up")
def up(
    host: str = typer.Option(None, help="API host (default CXMPUTE_API_HOST, 127.0.0.1)"),
    port: int = typer.Option(None, help="API port (default CXMPUTE_API_PORT, 8000)"),
    provider: bool = typer.Option(True, help="Also run a provider worker on this machine (embedded chain only)"),
    work_pool: str = typer.Option(LOCAL_POOL, help="Work pool whose flow runs (deployments) the local provider runs"),
) -> None:
    """Start the platform: a Prefect server on SQLite in the data dir, on 127.0.0.1 and answering only callers
    with the auth string kept there (or the one PREFECT_API_URL names, with PREFECT_API_AUTH_STRING), the API
    with the builder on 127.0.0.1:8000, an executor that runs workflow runs, and a local provider worker that
    runs network nodes and scheduled deployments. Each process started here is restarted when it exits, after a
    delay that grows while it keeps failing. Ctrl-C stops everything."""
    from flows.server import find_api, start_server, stop_server, use_api

    settings = get_settings()
    host, port = host or settings.api_host, port or settings.api_port
    if _port_taken(host, port):
        console.print(
            f"[red]port {port} on {host} is in use (another `cxmpute up`?): choose another with --port "
            "or CXMPUTE_API_PORT[/red]"
        )
        raise typer.Exit(1)
    supervisor = Supervisor(lambda line: console.print(line, markup=False, highlight=False))
    api = settings.prefect_api_url or find_api(f"http://127.0.0.1:{settings.prefect_port}/api")
    if api is None:
        home, prefect_port = settings.data_dir / "prefect-server", settings.prefect_port
        console.print(f"starting Prefect server on 127.0.0.1:{prefect_port} (data in {settings.data_dir})")
        # Restarted on the same port and database, so every process keeps its PREFECT_API_URL and the runs.
        supervisor.add(
            Supervised(
                "Prefect server",
                start=lambda: start_server(home, prefect_port),
                stop=stop_server,
                proc=start_server(home, prefect_port),
            )
        )
        api = f"http://127.0.0.1:{prefect_port}/api"
        # the server started here knows no API key: its clients send the auth string it was started with
        os.environ.pop("PREFECT_API_KEY", None)
    else:
        _check_prefect_credential(api)
    use_api(api)
    banner = (
        f"[bold]Cxmpute is up[/bold]\n  API and builder  http://{host}:{port}/\n"
        f"  API docs         http://{host}:{port}/docs\n  Prefect API      {api}\n"
        f"  local wallet     {local_address(settings)}\n"
        f"  data             {settings.data_dir}\nCtrl-C to stop."
    )
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    threading.Thread(
        target=_when_listening,
        daemon=True,
        name="when-listening",
        args=(f"http://127.0.0.1:{port}", banner, settings.chain_rpc_url is None, provider, api, work_pool, supervisor),
    ).start()
    try:
        _serve(host, port, before_shutdown=supervisor.stop)
    except KeyboardInterrupt:
        pass
    finally:
        supervisor.stop()  # again when the API never started, or stopped without being asked: a no-op otherwise


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

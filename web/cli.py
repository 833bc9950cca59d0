"""`cxmpute up` (the whole platform on one machine) and `cxmpute serve` (the API alone)."""

from __future__ import annotations

import os
import signal
import subprocess

import typer
from rich.console import Console

from cxmpute.settings import get_settings

app = typer.Typer()
console = Console(stderr=True)


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


@app.command("up")
def up(
    host: str = typer.Option(None, help="API host (default CXMPUTE_API_HOST, 127.0.0.1)"),
    port: int = typer.Option(None, help="API port (default CXMPUTE_API_PORT, 8000)"),
) -> None:
    """Start the platform: a Prefect server on SQLite in the data dir (or the one PREFECT_API_URL names)
    and the API with the builder on 127.0.0.1:8000, which runs workflows. Ctrl-C stops everything."""
    from flows.server import find_api, start_server, stop_server, use_api

    settings = get_settings()
    host, port = host or settings.api_host, port or settings.api_port
    prefect_proc: subprocess.Popen | None = None
    api = settings.prefect_api_url or find_api(f"http://127.0.0.1:{settings.prefect_port}/api")
    if api is None:
        console.print(f"starting Prefect server on 127.0.0.1:{settings.prefect_port} (data in {settings.data_dir})")
        prefect_proc = start_server(settings.data_dir / "prefect-server", settings.prefect_port)
        api = f"http://127.0.0.1:{settings.prefect_port}/api"
    use_api(api)
    console.print(f"[bold]Cxmpute is up[/bold]\n  API and builder  http://{host}:{port}/\n"
                  f"  API docs         http://{host}:{port}/docs\n  Prefect API      {api}\n"
                  f"  data             {settings.data_dir}\nCtrl-C to stop.")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        _serve(host, port)
    except KeyboardInterrupt:
        pass
    finally:
        if prefect_proc is not None:
            console.print("stopping Prefect server")
            stop_server(prefect_proc)


@app.command("serve")
def serve(host: str = typer.Option(None), port: int = typer.Option(None)) -> None:
    """Serve the API alone, against PREFECT_API_URL."""
    settings = get_settings()
    if os.environ.get("PREFECT_API_URL") is None and settings.prefect_api_url:
        os.environ["PREFECT_API_URL"] = settings.prefect_api_url
    _serve(host or settings.api_host, port or settings.api_port)

"""`cxmpute executor start`: a run executor on this machine."""

from __future__ import annotations

import logging
import signal

import typer
from rich.console import Console

app = typer.Typer(help="Run executors: processes that claim workflow runs from the platform database and execute them.")
console = Console(stderr=True)


@app.command("start")
def start(
    concurrency: int = typer.Option(
        None, min=1, max=1024, help="Runs executed at once (default CXMPUTE_EXECUTOR_CONCURRENCY, 32)"
    ),
) -> None:
    """Claim queued workflow runs and execute them until stopped (Ctrl-C or SIGTERM finishes the runs in
    flight). Needs the platform database (CXMPUTE_DATABASE_URL) and the Prefect API (PREFECT_API_URL with
    PREFECT_API_AUTH_STRING); start as many as you like, on any machine that reaches both and shares Prefect's
    result storage."""
    from cxmpute.settings import get_settings
    from flows.executor import Executor
    from flows.server import use_api

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    use_api(get_settings().resolved_prefect_api_url)
    executor = Executor(concurrency)
    signal.signal(signal.SIGTERM, lambda *_: executor.stop())
    signal.signal(signal.SIGINT, lambda *_: executor.stop())
    console.print(f"run executor {executor.id}: up to {executor.concurrency} runs at once")
    executor.serve()
    console.print(f"run executor {executor.id} stopped after {executor.executed} runs")

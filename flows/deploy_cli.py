"""`cxmpute deploy` and `cxmpute deployments ls|run|pause|resume|delete`."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import typer
from rich.console import Console
from rich.table import Table

from cxmpute.client import PlatformUnreachable
from cxmpute.errors import CxmputeError
from cxmpute.settings import get_settings

app = typer.Typer()
deployments_app = typer.Typer(help="List, run, pause, resume and delete Prefect deployments.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

_STATE_STYLE = {
    "Completed": "green",
    "Failed": "red",
    "Crashed": "red",
    "Cancelled": "red",
    "Running": "cyan",
    "Late": "yellow",
    "Pending": "dim",
    "Scheduled": "dim",
}


def _connect() -> None:
    """Deployments live on a Prefect server: PREFECT_API_URL, or the one `cxmpute up` runs; never a temporary one."""
    from flows.server import find_api, healthy, refused, use_api

    url = find_api(f"http://127.0.0.1:{get_settings().prefect_port}/api")
    if not url:
        raise PlatformUnreachable(
            "no Prefect server: set PREFECT_API_URL or start the platform with `cxmpute up`", field="PREFECT_API_URL"
        )
    if not healthy(url):
        raise PlatformUnreachable(f"the Prefect server at {url} does not answer", field="PREFECT_API_URL")
    if refused(url):
        raise CxmputeError(
            f"the Prefect server at {url} refuses this platform's credential: set "
            "PREFECT_API_AUTH_STRING to its auth string",
            field="PREFECT_API_AUTH_STRING",
        )
    use_api(url)


def _params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise CxmputeError(f"--param expects key=value, got {pair!r}", field="param")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


def _state(name: str) -> str:
    style = _STATE_STYLE.get(name)
    return f"[{style}]{name}[/{style}]" if style else name


@app.command("deploy")
def deploy(
    prefect_file: Path = typer.Option(Path("deploy/prefect.yaml"), "--prefect-file", help="A prefect.yaml"),
    name: list[str] = typer.Option([], "--name", "-n", help="Deploy this one (name or flow/name); repeat"),
    all_: bool = typer.Option(False, "--all", help="Deploy every deployment of the file"),
) -> None:
    """Create or update the Prefect deployments of a prefect.yaml on the Prefect server.

    Every problem of the file is reported, each with its deployment and field, before anything is created;
    the work pool is created (of the network's worker type, `cxmpute`) when missing. Deploying again updates.
    """
    from flows.deploy import apply
    from flows.prefect_file import DeployFileInvalid, plan

    try:
        planned = plan(prefect_file, name, all_)
        _connect()
        applied = asyncio.run(apply(planned))
    except DeployFileInvalid as exc:
        table = Table(title=f"{prefect_file}: {len(exc.problems)} problem(s)", title_style="bold red")
        for col in ("deployment", "field", "problem"):
            table.add_column(col)
        for p in exc.problems:
            table.add_row(p.deployment, p.field, p.message)
        err.print(table)
        raise typer.Exit(1) from None
    table = Table(title=f"{len(applied)} deployment(s) on {prefect_file}")
    for col in ("deployment", "work pool", "schedules", "triggers", ""):
        table.add_column(col)
    for a in applied:
        table.add_row(
            f"{a.flow}/{a.name}",
            a.work_pool,
            "\n".join(a.schedules) or "-",
            str(a.triggers),
            "created" if a.created else "updated",
        )
    console.print(table)


@deployments_app.command("ls")
def ls(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table")) -> None:
    """List deployments with their schedules, paused state, work pool and last run."""
    from flows.deployments import list_deployments

    _connect()
    rows = asyncio.run(list_deployments())
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    table = Table(title=f"{len(rows)} deployment(s)")
    for col in ("deployment", "schedules", "paused", "work pool", "last run", "ran on"):
        table.add_column(col, overflow="fold")  # a name cut short cannot be passed to `deployments run`
    for r in rows:
        last = r.last_run
        pool = f"{r.work_pool or '-'}" + (f" / {r.work_queue}" if r.work_queue and r.work_queue != "default" else "")
        table.add_row(
            f"{r.flow}/{r.name}",
            "\n".join(r.schedules) or "-",
            "yes" if r.paused else "no",
            pool,
            f"{_state(last.state)} {last.at:%Y-%m-%d %H:%M:%S}"
            if last and last.at
            else (_state(last.state) if last else "-"),
            (last.worker or "-") if last else "-",
        )
    console.print(table)


@deployments_app.command("run")
def run(
    name: str = typer.Argument(..., help="Deployment: name or flow/name"),
    param: list[str] = typer.Option([], "--param", "-p", help="Parameter as key=value (value may be JSON); repeat"),
    watch: bool = typer.Option(False, "--watch", help="Wait for the run to finish and report its outcome"),
    timeout: float | None = typer.Option(None, help="With --watch: give up waiting after this many seconds"),
) -> None:
    """Start a run of a deployment now; with --watch, wait for it (exit 1 unless it completes)."""
    from flows.deployments import start_run

    _connect()
    flow_run = asyncio.run(start_run(name, _params(param)))
    console.print(f"started flow run {flow_run.name} ({flow_run.id})")
    if watch:
        raise typer.Exit(_watch(flow_run.id, timeout))


def _watch(run_id: UUID, timeout: float | None) -> int:
    from flows.deployments import last_run, read_run

    deadline = None if timeout is None else time.monotonic() + timeout
    seen = None
    while True:
        flow_run = asyncio.run(read_run(run_id))
        state = flow_run.state
        if state and state.name != seen:
            seen = state.name
            err.print(f"  {_state(state.name)}")
        if state and state.is_final():
            break
        if deadline is not None and time.monotonic() > deadline:
            err.print(f"[yellow]still {seen} after {timeout:g}s; follow it with `cxmpute deployments ls`[/yellow]")
            return 1
        time.sleep(1.0)
    last = last_run(flow_run)
    console.print(f"flow run {flow_run.name}: {_state(last.state)}" + (f" on {last.worker}" if last.worker else ""))
    if not state.is_completed():
        err.print(f"[red]{state.message or state.name}[/red]")
        return 1
    return 0


@deployments_app.command("pause")
def pause(name: str = typer.Argument(..., help="Deployment: name or flow/name")) -> None:
    """Pause a deployment: its schedules stop creating runs until it is resumed."""
    from flows.deployments import set_paused

    _connect()
    console.print(f"paused {asyncio.run(set_paused(name, True))}")


@deployments_app.command("resume")
def resume(name: str = typer.Argument(..., help="Deployment: name or flow/name")) -> None:
    """Resume a paused deployment's schedules."""
    from flows.deployments import set_paused

    _connect()
    console.print(f"resumed {asyncio.run(set_paused(name, False))}")


@deployments_app.command("delete")
def delete(name: str = typer.Argument(..., help="Deployment: name or flow/name")) -> None:
    """Delete a deployment, its schedules and its triggers (runs it already made stay in history)."""
    from flows.deployments import delete as delete_deployment

    _connect()
    console.print(f"deleted {asyncio.run(delete_deployment(name))}")

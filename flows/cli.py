"""`cxmpute run`, `cxmpute workflows ...` and `cxmpute runs ...`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from cxmpute.settings import get_settings

app = typer.Typer()
workflows_app = typer.Typer(help="Validate and inspect workflow documents.", no_args_is_help=True)
runs_app = typer.Typer(help="Inspect, answer and re-run workflow runs.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

_STYLE = {"completed": "green", "failed": "red", "running": "cyan", "retrying": "yellow", "waiting": "magenta",
          "skipped": "dim", "pending": "dim", "cancelled": "red"}


def _parse_inputs(pairs: list[str]) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            err.print(f"[red]--input expects key=value, got {pair!r}[/red]")
            raise typer.Exit(2)
        try:
            inputs[key] = json.loads(raw)
        except ValueError:
            inputs[key] = raw
    return inputs


def _load(path: Path) -> dict[str, Any]:
    from flows.spec import load_document

    try:
        return load_document(path)
    except FileNotFoundError:
        err.print(f"[red]no such file: {path}[/red]")
        raise typer.Exit(2) from None
    except ValueError as exc:
        err.print(f"[red]{path}: {exc}[/red]")
        raise typer.Exit(2) from None


def _print_problems(problems) -> None:
    table = Table(title=f"{len(problems)} problem(s)", title_style="bold red")
    for col in ("where", "code", "field", "message"):
        table.add_column(col)
    for p in problems:
        where = f"node {p.node}" if p.node else (f"edge #{p.edge}" if p.edge is not None else "document")
        table.add_row(where, p.code, p.field or "", p.message)
    err.print(table)


def _connect() -> None:
    """Use PREFECT_API_URL, or the server `cxmpute up` runs; otherwise Prefect starts a temporary one, which
    requires the platform's credential too."""
    from flows.server import find_api, guard_temporary_server, refused, use_api

    settings = get_settings()
    url = find_api(f"http://127.0.0.1:{settings.prefect_port}/api")
    if url is None:
        guard_temporary_server()
        return
    if refused(url):
        err.print(f"[red]error (PREFECT_API_AUTH_STRING):[/red] the Prefect server at {url} refuses this "
                  "platform's credential: set PREFECT_API_AUTH_STRING to its auth string")
        raise typer.Exit(2)
    use_api(url)


def _node_table(view) -> Table:
    table = Table(title=f"run {view.name} ({view.id}) — {view.state}")
    for col in ("node", "agent", "state", "attempts", "seconds", "ran on", "cost gwei"):
        table.add_column(col)
    for n in view.nodes.values():
        secs = f"{(n.finished_at - n.started_at).total_seconds():.2f}" if n.started_at and n.finished_at else ""
        style = _STYLE.get(n.state, "")
        where = n.placement or {}
        table.add_row(n.node, n.agent or "", f"[{style}]{n.state}[/{style}]" if style else n.state,
                      str(n.attempts), secs, where.get("provider", "local")[:12],
                      str(where["cost_gwei"]) if where else "")
    return table


def _answer(run_id: str, nodes: list[str]) -> None:
    from agxnt.builtins import ApprovalResponse
    from flows.runner import resume_run

    if not sys.stdin.isatty():
        err.print(f"[magenta]waiting for approval of {', '.join(nodes)}[/magenta]: answer with "
                  f"`cxmpute runs resume {run_id} --approve` (or --reject), or POST /v1/runs/{run_id}/resume")
        return
    approved = typer.confirm(f"Approve node(s) {', '.join(nodes)}?", default=True)
    comment = typer.prompt("Comment", default="", show_default=False)
    resume_run(run_id, "local", ApprovalResponse(approved=approved, comment=comment))


def _follow(run_id: str, as_json: bool) -> int:
    from flows.history import read_run
    from flows.runner import wait_run

    announced = False
    with Live(console=err, refresh_per_second=8, transient=False) as live:
        while True:
            view = read_run(run_id, with_results=False)
            live.update(_node_table(view))
            if view.finished:
                break
            if view.state == "waiting" and not announced:
                live.stop()
                _answer(run_id, view.waiting_for)
                announced = True
                live.start()
            elif view.state != "waiting":
                announced = False
            time.sleep(0.25)
    view = wait_run(run_id)  # also lets a run executing in this process finish its last writes
    if view.state == "completed":
        console.print_json(json.dumps(view.outputs or {}, default=str)) if not as_json else print(
            view.model_dump_json(indent=2))
        return 0
    for n in view.nodes.values():
        if n.error and n.state == "failed":
            err.print(f"[red]node {n.node} failed after {n.attempts} attempt(s): {n.error}[/red]")
    err.print(f"[red]run {view.state}: {view.error or view.state_message or ''}[/red]")
    if as_json:
        print(view.model_dump_json(indent=2))
    return 1


@app.command("run")
def run(
    file: Path = typer.Argument(..., help="Workflow document (YAML or JSON)"),
    input: list[str] = typer.Option([], "--input", "-i", help="Run input as key=value (value may be JSON); repeat"),
    as_json: bool = typer.Option(False, "--json", help="Print the whole run view as JSON at the end"),
) -> None:
    """Run a workflow document on Prefect, showing each node's progress live, and print its outputs."""
    from flows.runner import start_run
    from flows.validate import validate

    document = _load(file)
    inputs = _parse_inputs(input)
    _, problems = validate(document)
    if problems:
        _print_problems(problems)
        raise typer.Exit(1)
    _connect()
    run_id = start_run(document, inputs, "local")
    err.print(f"started run {run_id}")
    raise typer.Exit(_follow(run_id, as_json))


@workflows_app.command("validate")
def validate_cmd(file: Path = typer.Argument(..., help="Workflow document (YAML or JSON)")) -> None:
    """Check a document and list every problem, each with its node or edge. Exit 1 when invalid."""
    from flows.validate import validate

    _, problems = validate(_load(file))
    if problems:
        _print_problems(problems)
        raise typer.Exit(1)
    console.print(f"[green]{file}: valid[/green]")


@workflows_app.command("migrate")
def migrate_cmd(
    file: Path = typer.Argument(..., help="Workflow document (YAML or JSON)"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write here instead of over FILE"),
) -> None:
    """Upgrade nodes pinned to agent versions that no longer exist, through each agent's migration."""
    from flows.spec import dump_document
    from flows.validate import migrate

    workflow, changes = migrate(_load(file))
    if not changes:
        console.print("nothing to migrate")
        return
    target = output or file
    target.write_text(dump_document(workflow, "json" if target.suffix == ".json" else "yaml"))
    for change in changes:
        console.print(change)
    console.print(f"wrote {target}")


@workflows_app.command("schema")
def schema_cmd() -> None:
    """Print the JSON Schema of workflow documents."""
    from flows.spec import workflow_json_schema

    console.print_json(json.dumps(workflow_json_schema()))


@workflows_app.command("templates")
def templates_cmd() -> None:
    """List the ready-made workflows in flows/templates."""
    import flows
    from flows.spec import load_document

    table = Table("file", "name", "description")
    for path in sorted((Path(flows.__file__).parent / "templates").glob("*.y*ml")):
        doc = load_document(path)
        table.add_row(str(path), doc.get("name", ""), (doc.get("description") or "").strip())
    console.print(table)


@runs_app.command("show")
def show(run_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show a run's state, each node's state and outputs."""
    from flows.history import read_run

    _connect()
    view = read_run(run_id)
    if as_json:
        print(view.model_dump_json(indent=2))
        return
    err.print(_node_table(view))
    if view.outputs is not None:
        console.print_json(json.dumps(view.outputs, default=str))


@runs_app.command("resume")
def resume(
    run_id: str,
    approve: bool = typer.Option(None, "--approve/--reject", help="Approve or reject"),
    value: Optional[str] = typer.Option(None, help="Replacement value (JSON or text)"),
    comment: str = typer.Option("", help="Comment recorded with the answer"),
) -> None:
    """Answer the approval a paused run waits for."""
    from agxnt.builtins import ApprovalResponse
    from agxnt.errors import AgentError
    from flows.runner import resume_run

    if approve is None:
        err.print("[red]say --approve or --reject[/red]")
        raise typer.Exit(2)
    parsed = _parse_inputs([f"v={value}"])["v"] if value is not None else None
    _connect()
    try:
        resume_run(run_id, "local", ApprovalResponse(approved=approve, value=parsed, comment=comment))
    except AgentError as exc:
        err.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from None
    console.print(f"run {run_id} resumed")


@runs_app.command("rerun")
def rerun(run_id: str, node: str = typer.Option(..., "--from", help="Node to run again"),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """Re-run a run from a node: nodes upstream of it reuse their outputs."""
    from flows.runner import rerun_from

    _connect()
    new_id = rerun_from(run_id, node, "local")
    err.print(f"started run {new_id}")
    raise typer.Exit(_follow(new_id, as_json))

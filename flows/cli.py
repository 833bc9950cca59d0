"""`cxmpute run`, `cxmpute workflows ...` and `cxmpute runs ...`.

Every run goes through the platform's HTTP API with the platform client: the API checks the document and
the inputs, records the run and has it executed; these commands only start, follow and answer runs. The
`workflows` commands are checks of a document on this machine and need no platform.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from rich.live import Live

    from cxmpute.client import PlatformClient

app = typer.Typer()
workflows_app = typer.Typer(help="Validate and inspect workflow documents.", no_args_is_help=True)
runs_app = typer.Typer(help="List, inspect, answer and re-run workflow runs.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

_STYLE = {
    "completed": "green",
    "failed": "red",
    "running": "cyan",
    "retrying": "yellow",
    "waiting": "magenta",
    "skipped": "dim",
    "pending": "dim",
    "cancelled": "red",
}
_FINISHED = {"completed", "failed", "cancelled"}
_ONE_LINE_IDS = 80  # terminal columns a runs table needs to keep each 36-character id on one line


def _client() -> PlatformClient:
    from cxmpute.client import PlatformClient

    return PlatformClient()


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


def _styled(state: str) -> str:
    style = _STYLE.get(state)
    return f"[{style}]{state}[/{style}]" if style else state


def _seconds(node: dict[str, Any]) -> str:
    if not (node.get("started_at") and node.get("finished_at")):
        return ""
    took = datetime.fromisoformat(node["finished_at"]) - datetime.fromisoformat(node["started_at"])
    return f"{took.total_seconds():.2f}"


def _node_table(view: dict[str, Any]) -> Table:
    table = Table(title=f"run {escape(view.get('workflow') or view['name'])} ({view['id']}) — {view['state']}")
    for col in ("node", "agent", "state", "attempts", "seconds", "ran on", "cost gwei"):
        table.add_column(col)
    for n in view["nodes"].values():
        where = n.get("placement") or {}
        table.add_row(
            escape(n["node"]),
            n.get("agent") or "",
            _styled(n["state"]),
            str(n.get("attempts", 0)),
            _seconds(n),
            where.get("provider", "local")[:12],
            str(where.get("cost_gwei", "")),
        )
    return table


def _events(client: PlatformClient, run_id: str) -> Iterator[tuple[str, str]]:
    """The run's server-sent events, as (event, data), until the platform ends the stream."""
    with client.stream("GET", f"/v1/runs/{run_id}/events") as resp:
        name, data = "message", []
        for line in resp.iter_lines():
            if not line:
                if data:
                    yield name, "\n".join(data)
                name, data = "message", []
            elif not line.startswith(":"):  # a comment is the keep-alive
                key, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if key == "event":
                    name = value
                elif key == "data":
                    data.append(value)


def _answer(client: PlatformClient, run_id: str, nodes: list[str]) -> None:
    if not sys.stdin.isatty():
        err.print(
            f"[magenta]waiting for approval of {', '.join(nodes)}[/magenta]: answer with "
            f"`cxmpute runs resume {run_id} --approve` (or --reject), or POST /v1/runs/{run_id}/resume"
        )
        return
    approved = typer.confirm(f"Approve node(s) {', '.join(nodes)}?", default=True)
    comment = typer.prompt("Comment", default="", show_default=False)
    client.post(f"/v1/runs/{run_id}/resume", json={"approved": approved, "comment": comment})


def _stop(live: Live) -> None:
    live.stop()
    if not err.is_terminal:  # rich ends the table's last line itself only on a terminal
        err.line()


def _follow(client: PlatformClient, run_id: str, as_json: bool) -> int:
    """Show each node's state live until the run ends, answering approvals on a terminal; print the outputs."""
    from rich.live import Live

    state, asked = "pending", False
    live = Live(console=err, auto_refresh=False, transient=False)
    live.start()
    try:
        while state not in _FINISHED:  # the platform ends a stream after an hour: a longer run needs another
            for event, data in _events(client, run_id):
                if event != "run":  # log lines: a failed node's error is printed once the run ends
                    continue
                view = json.loads(data)
                state = view["state"]
                live.update(_node_table(view), refresh=True)
                if state == "waiting" and not asked:
                    _stop(live)
                    _answer(client, run_id, view["waiting_for"])
                    live.start()
                asked = state == "waiting"
    except KeyboardInterrupt:
        _stop(live)
        err.print(f"stopped following; the run goes on: `cxmpute runs show {run_id}`")
        raise
    finally:
        if live.is_started:
            _stop(live)
    view = client.get(f"/v1/runs/{run_id}")
    if as_json:
        print(json.dumps(view, indent=2))
    if view["state"] == "completed":
        if not as_json:
            console.print_json(json.dumps(view.get("outputs") or {}))
        return 0
    for n in view["nodes"].values():
        if n["state"] == "failed" and n.get("error"):
            err.print(
                f"[red]node {escape(n['node'])} failed after {n['attempts']} attempt(s): {escape(n['error'])}[/red]"
            )
    err.print(f"[red]run {view['state']}: {escape(view.get('error') or view.get('state_message') or '')}[/red]")
    return 1


@app.command("run")
def run(
    file: Path = typer.Argument(..., help="Workflow document (YAML or JSON)"),
    input: list[str] = typer.Option([], "--input", "-i", help="Run input as key=value (value may be JSON); repeat"),
    as_json: bool = typer.Option(False, "--json", help="Print the whole run view as JSON at the end"),
) -> None:
    """Run a workflow document on the platform, showing each node's state live, and print its outputs.

    The platform checks the document and the inputs first (every problem is listed, exit 1) and keeps the
    run in its history (`cxmpute runs ls`)."""
    document = _load(file)
    inputs = _parse_inputs(input)
    with _client() as client:
        started = client.post("/v1/runs", json={"document": document, "inputs": inputs})
        err.print(f"started run {started['id']}")
        raise typer.Exit(_follow(client, started["id"], as_json))


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
    output: Path | None = typer.Option(None, "-o", "--output", help="Write here instead of over FILE"),
) -> None:
    """Upgrade nodes pinned to agent versions that no longer exist, through each agent's migration."""
    from flows.agent_versions import migrate
    from flows.spec import dump_document

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


@runs_app.command("ls")
def ls(
    limit: int = typer.Option(20, min=1, max=500, help="How many runs"),
    offset: int = typer.Option(0, min=0, help="Skip this many of the newest"),
    workflow_id: str | None = typer.Option(None, "--workflow", help="Only the runs of this saved workflow"),
    as_json: bool = typer.Option(False, "--json", help="Print the page as JSON"),
) -> None:
    """Your runs, newest first: id, workflow, state and when each was created."""
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if workflow_id:
        params["workflow_id"] = workflow_id
    with _client() as client:
        page = client.get("/v1/runs", params=params)
    if as_json:
        print(json.dumps(page, indent=2))
        return
    items = page["items"]
    shown = f"{offset + 1}–{offset + len(items)} of {page['total']}" if items else f"none of {page['total']}"
    table = Table(title=f"runs {shown}")
    # An id is what `runs show` takes: whole on one line where the terminal allows (to copy it), never cut.
    table.add_column("id", overflow="fold", no_wrap=console.width >= _ONE_LINE_IDS)
    for col in ("workflow", "state", "created"):
        table.add_column(col, overflow="fold")
    for r in items:
        created = datetime.fromisoformat(r["created_at"]).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(r["id"], escape(r.get("workflow") or ""), _styled(r["state"]), created)
    console.print(table)


@runs_app.command("show")
def show(run_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show a run's state, each node's state and outputs."""
    with _client() as client:
        view = client.get(f"/v1/runs/{run_id}")
    if as_json:
        print(json.dumps(view, indent=2))
        return
    err.print(_node_table(view))
    if view.get("outputs") is not None:
        console.print_json(json.dumps(view["outputs"]))


@runs_app.command("resume")
def resume(
    run_id: str,
    approve: bool = typer.Option(None, "--approve/--reject", help="Approve or reject"),
    value: str | None = typer.Option(None, help="Replacement value (JSON or text)"),
    comment: str = typer.Option("", help="Comment recorded with the answer"),
) -> None:
    """Answer the approval a paused run waits for."""
    if approve is None:
        err.print("[red]say --approve or --reject[/red]")
        raise typer.Exit(2)
    answer: dict[str, Any] = {"approved": approve, "comment": comment}
    if value is not None:
        answer["value"] = _parse_inputs([f"v={value}"])["v"]
    with _client() as client:
        client.post(f"/v1/runs/{run_id}/resume", json=answer)
    console.print(f"run {run_id} resumed")


@runs_app.command("cancel")
def cancel(
    run_id: str,
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until the run has stopped"),
) -> None:
    """Cancel a run: queued, running or waiting for an approval. Its nodes stop, on providers too, and the
    unused escrow of their leases is refunded."""
    with _client() as client:
        answer = client.post(f"/v1/runs/{run_id}/cancel")
        state = answer["state"]
        deadline = time.monotonic() + 120
        while wait and state != "cancelled" and time.monotonic() < deadline:
            time.sleep(0.2)
            state = client.get(f"/v1/runs/{run_id}")["state"]
            if state in ("completed", "failed"):  # it ended before its executor could stop it
                break
    console.print(f"run {run_id} {state}")


@runs_app.command("rerun")
def rerun(
    run_id: str,
    node: str = typer.Option(..., "--from", help="Node to run again"),
    input: list[str] = typer.Option(
        [], "--input", "-i", help="New run input as key=value; the original run's inputs when none is given"
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Re-run a run from a node: nodes upstream of it reuse their outputs."""
    body: dict[str, Any] = {"node": node}
    if input:
        body["inputs"] = _parse_inputs(input)
    with _client() as client:
        started = client.post(f"/v1/runs/{run_id}/rerun", json=body)
        err.print(f"started run {started['id']}")
        raise typer.Exit(_follow(client, started["id"], as_json))

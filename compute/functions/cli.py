"""`cxmpute functions deploy|ls|invoke|logs`: serverless functions through the platform API."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Column, Table

from cxmpute.client import PlatformClient, PlatformError
from cxmpute.errors import CxmputeError
from cxmpute.settings import get_settings

app = typer.Typer(
    help="Serverless functions: deploy a folder with a handler(event, context), invoke it, read its logs.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)
# A synchronous invocation answers when the handler returns: up to its timeout (at most 900 s), plus a cold start.
INVOKE_TIMEOUT_S = 1000.0


def _output(record: dict) -> None:
    """What the handler printed, on stderr: the result alone goes to stdout."""
    if record.get("stdout") or record.get("stderr"):
        err.print((record.get("stdout") or "") + (record.get("stderr") or ""), end="", markup=False, highlight=False)


@app.command()
def deploy(
    directory: Path = typer.Argument(..., exists=True, file_okay=False, help="Folder holding the handler module"),
    name: str = typer.Option(..., "--name", "-n", help="Function name (lower-case letters, digits, '-')"),
    handler: str = typer.Option("handler:handler", help="module:function called with (event, context)"),
    max_price: int | None = typer.Option(
        None,
        "--max-price",
        min=1,
        help="Run invocations on providers asking at "
        "most this (gwei per compute-unit-second); default: the platform's pool",
    ),
    memory_mb: int = typer.Option(256, min=64, max=8192, help="Memory limit per interpreter"),
    timeout: float = typer.Option(30.0, min=0.001, max=900, help="Seconds one invocation may run"),
    concurrency: int = typer.Option(4, min=1, max=256, help="Invocations at once; more wait in a queue"),
) -> None:
    """Package DIRECTORY, store it content-addressed and register it as NAME's next version."""
    import base64

    # Packaging reads the user's own folder, so it happens here; the platform checks the package again.
    from compute.functions import package

    limit = get_settings().function_max_package_mb * 2**20
    with err.status(f"packaging {directory}"):
        data = package.build(directory, limit)
        package.check(data, handler, limit)
    with err.status(f"uploading {len(data)} bytes"), PlatformClient() as platform:
        out = platform.put(
            f"/v1/functions/{name}",
            json={
                "package_base64": base64.b64encode(data).decode(),
                "handler": handler,
                "memory_mb": memory_mb,
                "timeout_s": timeout,
                "concurrency": concurrency,
                "price_max_gwei": max_price,
            },
        )
    what = "deployed" if out["created"] else "unchanged:"
    console.print(f"{what} {out['name']} version {out['version']} (package {out['cid']}, {out['size']} bytes)")


@app.command("ls")
def list_cmd(
    name: str | None = typer.Argument(None, help="Show this function's versions"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON"),
) -> None:
    """Your functions (newest versions), or one function's versions."""
    with PlatformClient() as platform:
        rows = platform.get(f"/v1/functions/{name}" if name else "/v1/functions")
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    # A name is what the other commands take: folded onto more lines, never cut.
    table = Table(
        Column("name", overflow="fold"),
        "version",
        "handler",
        "memory MB",
        "timeout s",
        "concurrency",
        "max price",
        "created",
    )
    for row in rows:
        table.add_row(
            row["name"],
            str(row["version"]),
            row["handler"],
            str(row["memory_mb"]),
            f"{row['timeout_s']:g}",
            str(row["concurrency"]),
            str(row["price_max_gwei"] or "local"),
            row["created_at"][:19],
        )
    console.print(table)


@app.command()
def invoke(
    name: str = typer.Argument(..., help="Function to invoke"),
    event: str = typer.Option("null", "--event", "-e", help="The event, as JSON"),
    version: int | None = typer.Option(None, min=1, help="Version to run; default: the newest"),
    max_price: int | None = typer.Option(None, "--max-price", min=1, help="Run on a provider asking at most this"),
    background: bool = typer.Option(False, "--async", help="Return at once with the result URL"),
) -> None:
    """Invoke NAME with an event and print its result (or, with --async, where to find it)."""
    try:
        value = json.loads(event)
    except ValueError as exc:
        raise CxmputeError(f"not JSON: {exc}", field="--event") from None
    with err.status(f"invoking {name}"), PlatformClient(timeout=INVOKE_TIMEOUT_S) as platform:
        try:
            out = platform.post(
                f"/v1/functions/{name}/invoke",
                params={"mode": "async" if background else "sync"},
                json={"event": value, "version": version, "price_max_gwei": max_price},
            )
        except PlatformError as exc:
            _output(exc.payload)  # a failed invocation's record: its output explains the failure the root reports
            raise
    if background:
        console.print(out["result_url"], markup=False, highlight=False, soft_wrap=True)
        return
    _output(out)
    typer.echo(json.dumps(out["result"], indent=2))
    err.print(
        f"{'cold' if out['cold'] else 'warm'}, {out['duration_ms']:.1f} ms in the handler, {out['billed_ms']} ms billed"
    )


@app.command()
def logs(
    name: str = typer.Argument(..., help="Function whose invocations to show"),
    limit: int = typer.Option(20, min=1, max=500, help="How many, newest first"),
    offset: int = typer.Option(0, min=0, help="Skip this many of the newest"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON"),
) -> None:
    """Recent invocations of NAME with their status, metrics and output."""
    with PlatformClient() as platform:
        rows = platform.get(f"/v1/functions/{name}/invocations", params={"limit": limit, "offset": offset})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        metrics = (
            f"{'cold' if row['cold'] else 'warm'} {row['duration_ms']:.1f} ms, {row['billed_ms']} ms billed, "
            f"{row['max_rss_mb']} MB peak"
            if row["duration_ms"] is not None
            else ""
        )
        console.print(
            f"[bold]{row['created_at'][:23]}[/bold] {row['id']} v{row['version']} {row['status']} "
            f"on {row['where']} {metrics}",
            highlight=False,
            soft_wrap=True,
        )
        for stream in ("stdout", "stderr"):
            for line in row[stream].splitlines():
                console.print(f"  {stream}: {line}", markup=False, highlight=False)
        if row["error"]:
            console.print(f"  error: {row['error']}", markup=False, highlight=False)

"""`cxmpute functions deploy|ls|invoke|logs`: serverless functions through the platform API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from compute.functions import package
from cxmpute.errors import CxmputeError
from cxmpute.http import client
from cxmpute.settings import get_settings

app = typer.Typer(help="Serverless functions: deploy a folder with a handler(event, context), invoke it, read "
                       "its logs.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _headers() -> dict[str, str]:
    """Signed in with the configured wallet when there is one; otherwise the API's anonymous local owner."""
    if not get_settings().wallet_key:
        return {}
    from compute.cli import _token

    return {"Authorization": f"Bearer {_token()}"}


def _call(method: str, path: str, *, body: dict | None = None, params: dict | None = None,
          timeout: float = 60.0) -> tuple[int, Any]:
    try:
        with client(get_settings().resolved_api_url, timeout=timeout, headers=_headers()) as http:
            resp = http.request(method, path, json=body, params=params)
    except httpx.HTTPError as exc:
        err.print(f"[red]error:[/red] cannot reach the platform API at {get_settings().resolved_api_url}: {exc}")
        raise typer.Exit(1) from None
    data = resp.json() if resp.content else None
    if resp.status_code >= 400 and not (isinstance(data, dict) and "status" in data):
        detail = data.get("detail") if isinstance(data, dict) else resp.text
        field = data.get("field") if isinstance(data, dict) else None
        err.print(f"[red]error {resp.status_code}{f' ({field})' if field else ''}:[/red] {detail}")
        raise typer.Exit(1)
    return resp.status_code, data


@app.command()
def deploy(
    directory: Path = typer.Argument(..., exists=True, file_okay=False, help="Folder holding the handler module"),
    name: str = typer.Option(..., "--name", "-n", help="Function name (lower-case letters, digits, '-')"),
    handler: str = typer.Option("handler:handler", help="module:function called with (event, context)"),
    max_price: int | None = typer.Option(None, "--max-price", min=1, help="Run invocations on providers asking at "
                                         "most this (gwei per compute-unit-second); default: the platform's pool"),
    memory_mb: int = typer.Option(256, min=64, max=8192, help="Memory limit per interpreter"),
    timeout: float = typer.Option(30.0, min=0.001, max=900, help="Seconds one invocation may run"),
    concurrency: int = typer.Option(4, min=1, max=256, help="Invocations at once; more wait in a queue"),
) -> None:
    """Package DIRECTORY, store it content-addressed and register it as NAME's next version."""
    import base64

    with err.status(f"packaging {directory}"):
        try:
            data = package.build(directory, get_settings().function_max_package_mb * 2**20)
            package.check(data, handler, get_settings().function_max_package_mb * 2**20)
        except CxmputeError as exc:
            err.print(f"[red]error ({exc.field}):[/red] {exc.message}")
            raise typer.Exit(2) from None
    with err.status(f"uploading {len(data)} bytes"):
        status, out = _call("PUT", f"/v1/functions/{name}", body={
            "package_base64": base64.b64encode(data).decode(), "handler": handler, "memory_mb": memory_mb,
            "timeout_s": timeout, "concurrency": concurrency, "price_max_gwei": max_price})
    what = "deployed" if out["created"] else "unchanged:"
    console.print(f"{what} {out['name']} version {out['version']} (package {out['cid']}, {out['size']} bytes)")


@app.command("ls")
def list_cmd(name: str | None = typer.Argument(None, help="Show this function's versions")) -> None:
    """Your functions (newest versions), or one function's versions."""
    _, rows = _call("GET", f"/v1/functions/{name}" if name else "/v1/functions")
    table = Table("name", "version", "handler", "memory MB", "timeout s", "concurrency", "max price", "created")
    for row in rows:
        table.add_row(row["name"], str(row["version"]), row["handler"], str(row["memory_mb"]), f"{row['timeout_s']:g}",
                      str(row["concurrency"]), str(row["price_max_gwei"] or "local"), row["created_at"][:19])
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
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--event") from None
    with err.status(f"invoking {name}"):
        status, out = _call("POST", f"/v1/functions/{name}/invoke", params={"mode": "async" if background else "sync"},
                            body={"event": value, "version": version, "price_max_gwei": max_price}, timeout=1000)
    if background:
        console.print(out["result_url"])
        return
    if out["stdout"] or out["stderr"]:
        err.print(out["stdout"] + out["stderr"], end="", markup=False, highlight=False)
    if out["status"] != "ok":
        err.print(f"[red]{out['status']}:[/red] {out['error']}")
        raise typer.Exit(1)
    console.print_json(data=out["result"])
    err.print(f"{'cold' if out['cold'] else 'warm'}, {out['duration_ms']:.1f} ms in the handler, "
              f"{out['billed_ms']} ms billed")


@app.command()
def logs(
    name: str = typer.Argument(..., help="Function whose invocations to show"),
    limit: int = typer.Option(20, min=1, max=500, help="How many, newest first"),
    offset: int = typer.Option(0, min=0, help="Skip this many of the newest"),
) -> None:
    """Recent invocations of NAME with their status, metrics and output."""
    _, rows = _call("GET", f"/v1/functions/{name}/invocations", params={"limit": limit, "offset": offset})
    for row in rows:
        metrics = (f"{'cold' if row['cold'] else 'warm'} {row['duration_ms']:.1f} ms, {row['billed_ms']} ms billed, "
                   f"{row['max_rss_mb']} MB peak" if row["duration_ms"] is not None else "")
        console.print(f"[bold]{row['created_at'][:23]}[/bold] {row['id']} v{row['version']} {row['status']} "
                      f"on {row['where']} {metrics}", highlight=False)
        for stream in ("stdout", "stderr"):
            for line in row[stream].splitlines():
                console.print(f"  {stream}: {line}", markup=False, highlight=False)
        if row["error"]:
            console.print(f"  error: {row['error']}", markup=False, highlight=False)

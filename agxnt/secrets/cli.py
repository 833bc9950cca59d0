"""`cxmpute secrets set|ls|rm`: the account's secrets through the platform's API. Values are read from a hidden
prompt or standard input, never from an argument (which would land in shell history and `ps`)."""

from __future__ import annotations

import json
import sys
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

from cxmpute.client import PlatformClient

app = typer.Typer(
    help="Keep API keys, bot tokens and webhook URLs encrypted; agents read them by name.", no_args_is_help=True
)
console = Console()


def _path(name: str) -> str:
    return f"/v1/secrets/{quote(name, safe='')}"


@app.command("set")
def set_secret(
    name: str = typer.Argument(..., help="Secret name, e.g. telegram_bot_token"),
    stdin: bool = typer.Option(False, "--stdin", help="Read the value from standard input"),
) -> None:
    """Create or replace a secret."""
    value = sys.stdin.read().strip() if stdin else typer.prompt("Value", hide_input=True)
    with PlatformClient() as platform:
        info = platform.put(_path(name), json={"value": value})
    console.print(f"saved {info['name']}")


@app.command("ls")
def list_secrets(as_json: bool = typer.Option(False, "--json", help="Print JSON")) -> None:
    """Names of the account's secrets (values are never shown)."""
    with PlatformClient() as platform:
        items = platform.get("/v1/secrets")["items"]
    if as_json:
        console.print_json(json.dumps(items))
        return
    table = Table("name", "updated")
    table.columns[0].overflow = "fold"
    for info in items:
        table.add_row(info["name"], info["updated_at"])
    console.print(table)


@app.command("rm")
def delete_secret(name: str) -> None:
    """Delete a secret."""
    with PlatformClient() as platform:
        platform.delete(_path(name))
    console.print(f"deleted {name}")

"""`cxmpute secrets set|ls|rm`: the account's secrets from the command line. Values are read from a hidden
prompt or standard input, never from an argument (which would land in shell history and `ps`)."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.table import Table

from agxnt.errors import AgentError
from agxnt.secrets.store import store_for
from cxmpute.settings import get_settings

app = typer.Typer(help="Keep API keys, bot tokens and webhook URLs encrypted; agents read them by name.",
                  no_args_is_help=True)
console = Console()

OwnerOpt = typer.Option("local", "--owner", help="Account the secret belongs to")


def _fail(exc: AgentError) -> typer.Exit:
    where = f" ({exc.field})" if exc.field else ""
    console.print(f"[red]error{where}:[/red] {exc.message}")
    return typer.Exit(2)


@app.command("set")
def set_secret(name: str = typer.Argument(..., help="Secret name, e.g. telegram_bot_token"),
               stdin: bool = typer.Option(False, "--stdin", help="Read the value from standard input"),
               owner: str = OwnerOpt) -> None:
    """Create or replace a secret."""
    value = sys.stdin.read().strip() if stdin else typer.prompt("Value", hide_input=True)
    try:
        info = store_for(get_settings()).set(owner, name, value)
    except AgentError as exc:
        raise _fail(exc) from None
    console.print(f"saved {info.name}")


@app.command("ls")
def list_secrets(owner: str = OwnerOpt) -> None:
    """Names of the account's secrets (values are never shown)."""
    table = Table("name", "updated")
    for info in store_for(get_settings()).names(owner):
        table.add_row(info.name, info.updated_at.isoformat(timespec="seconds"))
    console.print(table)


@app.command("rm")
def delete_secret(name: str, owner: str = OwnerOpt) -> None:
    """Delete a secret."""
    try:
        store_for(get_settings()).delete(owner, name)
    except AgentError as exc:
        raise _fail(exc) from None
    console.print(f"deleted {name}")

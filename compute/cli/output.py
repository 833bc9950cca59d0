"""How the network's commands print the platform's answers: as JSON, or as tables whose cells stay usable."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err = Console(stderr=True)
JSON = typer.Option(False, "--json", help="Print the platform's answer as JSON")


def show(data: Any) -> None:
    console.print_json(data=json.loads(json.dumps(data, default=str)))


def table(*columns: str) -> Table:
    """A table whose cells fold rather than cut: an id or address shortened with an ellipsis cannot be used."""
    made = Table()
    for name in columns:
        made.add_column(name, overflow="fold", no_wrap=False)
    return made

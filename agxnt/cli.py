"""`cxmpute agents list|show`."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Browse the agent catalogue.", no_args_is_help=True)
console = Console()


@app.command("list")
def list_agents(family: Optional[str] = typer.Option(None, help="Only this family (e.g. Memory, Web)")) -> None:
    """List every registered agent with its family, version and needs."""
    from agxnt.registry import registry

    table = Table("id", "name", "family", "version", "needs")
    for info in registry.catalogue():
        if family and info.family.lower() != family.lower():
            continue
        r = info.resources
        needs = ", ".join(x for x in [r.runtime, "network" if r.network else "", "browser" if r.browser else "",
                                     f"{r.gpu} gpu" if r.gpu else ""] if x)
        table.add_row(info.id, info.name, info.family, info.version, needs)
    console.print(table)


@app.command("show")
def show(agent_id: str, version: Optional[str] = None) -> None:
    """Show one agent: description, resources and its input/output JSON Schemas."""
    from agxnt.errors import UnknownAgent
    from agxnt.registry import registry

    try:
        cls = registry.get(agent_id, version)
    except UnknownAgent as exc:
        Console(stderr=True).print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from None
    console.print_json(json.dumps(cls.info(registry.versions(agent_id)).model_dump(mode="json")))

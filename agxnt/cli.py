"""`cxmpute agents list|show`: the platform's agent catalogue."""

from __future__ import annotations

import json
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

from cxmpute.client import PlatformClient

app = typer.Typer(help="Browse the agent catalogue.", no_args_is_help=True)
console = Console()


def _catalogue() -> PlatformClient:
    """The catalogue is public: reading it needs no sign-in."""
    return PlatformClient(anonymous=True)


@app.command("list")
def list_agents(
    family: str | None = typer.Option(None, help="Only this family (e.g. Memory, Web)"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON"),
) -> None:
    """List every registered agent with its family, version and needs."""
    with _catalogue() as platform:
        items = platform.get("/v1/agents", params={"family": family} if family else None)["items"]
    if as_json:
        console.print_json(json.dumps(items))
        return
    table = Table("id", "name", "family", "version", "needs")
    table.columns[0].overflow = "fold"
    for info in items:
        r = info["resources"]
        needs = ", ".join(
            x
            for x in [
                r.get("runtime") or "",
                "network" if r.get("network") else "",
                "browser" if r.get("browser") else "",
                f"{r['gpu']} gpu" if r.get("gpu") else "",
            ]
            if x
        )
        table.add_row(info["id"], info["name"], info["family"], info["version"], needs)
    console.print(table)


@app.command("show")
def show(agent_id: str, version: str | None = typer.Option(None, help="A version; the newest when empty")) -> None:
    """Show one agent: description, resources and its input/output JSON Schemas."""
    with _catalogue() as platform:
        info = platform.get(f"/v1/agents/{quote(agent_id, safe='')}", params={"version": version} if version else None)
    console.print_json(json.dumps(info))

"""`cxmpute services deploy|ls|rm|logs`: container services through the platform API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from cxmpute.http import client
from cxmpute.settings import get_settings
from cxmpute.terminal import transfer_bar

app = typer.Typer(help="Container services: run an image as replicas on providers, behind the gateway.",
                  no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _headers() -> dict[str, str]:
    """Signed in with the configured wallet when there is one; otherwise the API's anonymous local owner."""
    if not get_settings().wallet_key:
        return {}
    from compute.cli import _token

    return {"Authorization": f"Bearer {_token()}"}


def _call(method: str, path: str, **kwargs) -> Any:
    url = get_settings().resolved_api_url
    try:
        with client(url, timeout=kwargs.pop("timeout", 60.0), headers=_headers()) as http:
            resp = http.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        err.print(f"[red]error:[/red] cannot reach the platform API at {url}: {exc}")
        raise typer.Exit(1) from None
    data = resp.json() if resp.content else None
    if resp.status_code >= 400:
        detail = data.get("detail") if isinstance(data, dict) else resp.text
        field = data.get("field") if isinstance(data, dict) else None
        err.print(f"[red]error {resp.status_code}{f' ({field})' if field else ''}:[/red] {detail}")
        raise typer.Exit(1)
    return data


def _upload(tarball: Path) -> str:
    size = tarball.stat().st_size

    def chunks():
        with open(tarball, "rb") as f, transfer_bar(f"uploading {tarball.name}", size) as advance:
            while block := f.read(1 << 20):
                advance(len(block))
                yield block

    stored = _call("POST", "/v1/storage/files", params={"name": tarball.name}, content=chunks(), timeout=600)
    return stored["file"]["cid"]


def _env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--env")
        env[key] = value
    return env


@app.command()
def deploy(
    image: str = typer.Argument(..., help="A `docker save` tarball to upload, or the CID of one in your storage"),
    name: str = typer.Option(..., "--name", "-n", help="Service name (lower-case letters, digits, '-')"),
    port: int = typer.Option(..., "--port", "-p", help="Port the container serves HTTP on"),
    max_price: int = typer.Option(..., "--max-price", min=1, help="Highest ask per compute-unit-second (gwei)"),
    min_price: int = typer.Option(0, "--min-price", min=0, help="Lowest ask per compute-unit-second (gwei)"),
    env: list[str] = typer.Option([], "--env", "-e", help="KEY=VALUE, repeatable"),
    cpu: int = typer.Option(1, help="vCPUs per replica"),
    memory_mb: int = typer.Option(256, help="Memory limit per replica"),
    replicas: int = typer.Option(1, "--min", help="Replicas at least"),
    most: int | None = typer.Option(None, "--max", help="Replicas at most (default: --min)"),
    target: int = typer.Option(8, help="In-flight requests per replica the autoscaler aims for"),
    public: bool = typer.Option(False, "--public", help="Anyone may call it, without signing in"),
    network: bool = typer.Option(False, "--network", help="Let the replicas reach the public internet"),
) -> None:
    """Deploy IMAGE as service NAME."""
    cid = _upload(Path(image)) if Path(image).is_file() else image
    out = _call("POST", "/v1/services", json={
        "name": name, "image": cid, "port": port, "env": _env(env), "cpu": cpu, "memory_mb": memory_mb,
        "min_replicas": replicas, "max_replicas": most or replicas, "target_inflight": target,
        "price_min_gwei": min_price, "price_max_gwei": max_price, "public": public,
        "network": network})
    api = get_settings().resolved_api_url
    url = f"{api}/v1/public/services/{out['owner']}/{name}/" if public else f"{api}/v1/services/{name}/proxy/"
    # Not wrapped by the console: a URL cut in two is not one a user can copy.
    console.print(f"deployed {out['name']} (image {cid}); replicas start on providers; reach it at {url}",
                  soft_wrap=True)


@app.command("ls")
def list_cmd(name: str | None = typer.Argument(None, help="Show this service's replicas")) -> None:
    """Your services, or one service's replicas."""
    if name is None:
        table = Table("name", "image", "port", "replicas live", "min-max", "price range", "created")
        for row in _call("GET", "/v1/services"):
            live = sum(r["live"] for r in row["replicas"])
            table.add_row(row["name"], row["image"][:20] + "…", str(row["port"]), f"{live}/{len(row['replicas'])}",
                          f"{row['min_replicas']}-{row['max_replicas']}",
                          f"{row['price_min_gwei']}-{row['price_max_gwei']}", row["created_at"][:19])
        console.print(table)
        return
    # One line per replica: whole ids and addresses, whatever the terminal's width.
    for r in _call("GET", f"/v1/services/{name}")["replicas"]:
        where = f"{r['host']}:{r['host_port']}" if r["host"] else "-"
        console.print(f"{r['id']}  {r['status']}{' (live)' if r['live'] else ''}  provider {r['provider'] or '-'}  "
                      f"at {where}  restarts {r['restarts']}{'  error: ' + r['error'] if r['error'] else ''}",
                      markup=False, highlight=False, soft_wrap=True)


@app.command("rm")
def remove(name: str = typer.Argument(..., help="Service to delete")) -> None:
    """Delete NAME: its replicas stop and their leases end."""
    out = _call("DELETE", f"/v1/services/{name}")
    console.print(f"deleted {out['name']}; stopping {len(out['replicas'])} replica(s)")


@app.command()
def logs(name: str = typer.Argument(..., help="Service whose replicas' output to show")) -> None:
    """The newest output of each of NAME's replicas."""
    for replica, text in _call("GET", f"/v1/services/{name}/logs").items():
        console.print(f"[bold]--- replica {replica}[/bold]")
        console.print(text, markup=False, highlight=False, soft_wrap=True, end="" if text.endswith("\n") else "\n")

"""`cxmpute services deploy|ls|rm|logs`: container services through the platform API."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Column, Table

from cxmpute.client import PlatformClient
from cxmpute.errors import CxmputeError
from cxmpute.terminal import transfer_bar

app = typer.Typer(
    help="Container services: run an image as replicas on providers, behind the gateway.", no_args_is_help=True
)
console = Console()
# An image tarball can be gigabytes; the platform answers once every byte is stored.
UPLOAD_TIMEOUT_S = 600.0
# Replicas stop at the reconciler's next pass (every second) once their provider hears of it.
REMOVE_TIMEOUT_S = 60.0


class _Chunks:
    """A file's bytes, read afresh each time they are iterated: the client sends a request once more after
    signing in anew, and a generator would send nothing the second time."""

    def __init__(self, path: Path, advance: Callable[[int], None]):
        self.path, self.advance = path, advance

    def __iter__(self) -> Iterator[bytes]:
        with open(self.path, "rb") as f:
            while block := f.read(1 << 20):
                self.advance(len(block))
                yield block


def _upload(tarball: Path) -> str:
    with (
        transfer_bar(f"uploading {tarball.name}", tarball.stat().st_size) as advance,
        PlatformClient(timeout=UPLOAD_TIMEOUT_S) as platform,
    ):
        stored = platform.post("/v1/storage/files", params={"name": tarball.name}, content=_Chunks(tarball, advance))
    return stored["file"]["cid"]


def _env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise CxmputeError(f"{pair!r} is not KEY=VALUE", field="--env")
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
    variables = _env(env)
    cid = _upload(Path(image)) if Path(image).is_file() else image
    with PlatformClient() as platform:
        out = platform.post(
            "/v1/services",
            json={
                "name": name,
                "image": cid,
                "port": port,
                "env": variables,
                "cpu": cpu,
                "memory_mb": memory_mb,
                "min_replicas": replicas,
                "max_replicas": most or replicas,
                "target_inflight": target,
                "price_min_gwei": min_price,
                "price_max_gwei": max_price,
                "public": public,
                "network": network,
            },
        )
        api = platform.base_url
    url = f"{api}/v1/public/services/{out['owner']}/{name}/" if public else f"{api}/v1/services/{name}/proxy/"
    # Not wrapped by the console: a URL cut in two is not one a user can copy.
    console.print(
        f"deployed {out['name']} (image {cid}); replicas start on providers; reach it at {url}", soft_wrap=True
    )


@app.command("ls")
def list_cmd(
    name: str | None = typer.Argument(None, help="Show this service's replicas"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON"),
) -> None:
    """Your services, or one service's replicas."""
    with PlatformClient() as platform:
        found = platform.get(f"/v1/services/{name}" if name else "/v1/services")
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    if name is None:
        # A name and an image CID are what the other commands take: folded onto more lines, never cut.
        table = Table(
            Column("name", overflow="fold"),
            Column("image", overflow="fold"),
            "port",
            "replicas live",
            "min-max",
            "price range",
            "created",
        )
        for row in found:
            live = sum(r["live"] for r in row["replicas"])
            table.add_row(
                row["name"],
                row["image"],
                str(row["port"]),
                f"{live}/{len(row['replicas'])}",
                f"{row['min_replicas']}-{row['max_replicas']}",
                f"{row['price_min_gwei']}-{row['price_max_gwei']}",
                row["created_at"][:19],
            )
        console.print(table)
        return
    # One line per replica: whole ids and addresses, whatever the terminal's width.
    for r in found["replicas"]:
        where = f"{r['host']}:{r['host_port']}" if r["host"] else "-"
        console.print(
            f"{r['id']}  {r['status']}{' (live)' if r['live'] else ''}  provider {r['provider'] or '-'}  "
            f"at {where}  restarts {r['restarts']}{'  error: ' + r['error'] if r['error'] else ''}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


@app.command("rm")
def remove(
    name: str = typer.Argument(..., help="Service to delete"),
    wait: bool = typer.Option(
        True,
        "--wait/--no-wait",
        help="Wait until the replicas have stopped and their leases ended, so their "
        "capacity is free again (at most --timeout seconds)",
    ),
    timeout: float = typer.Option(REMOVE_TIMEOUT_S, help="With --wait: give up waiting after this long"),
) -> None:
    """Delete NAME: its replicas stop and their leases end."""
    with PlatformClient() as platform:
        out = platform.delete(f"/v1/services/{name}")
        leases = [r["lease_id"] for r in out["replicas"] if r["lease_id"]]
        if not wait or not leases:
            console.print(f"deleted {out['name']}; stopping {len(out['replicas'])} replica(s)")
            return
        with console.status(f"deleted {out['name']}; stopping {len(out['replicas'])} replica(s)"):
            open_leases = _await_ended(platform, leases, timeout)
    if open_leases:
        console.print(
            f"deleted {out['name']}; {len(open_leases)} replica(s) still stopping after {timeout:g} s "
            "(their leases end when their providers stop them)"
        )
    else:
        console.print(f"deleted {out['name']}; its {len(out['replicas'])} replica(s) stopped and their leases ended")


def _await_ended(platform: PlatformClient, leases: list[str], timeout: float) -> list[str]:
    """The leases of ``leases`` still active once all have ended or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        leases = [lease for lease in leases if platform.get(f"/v1/leases/{lease}")["status"] == "active"]
        if not leases or time.monotonic() >= deadline:
            return leases
        time.sleep(0.5)


@app.command()
def logs(name: str = typer.Argument(..., help="Service whose replicas' output to show")) -> None:
    """The newest output of each of NAME's replicas."""
    with PlatformClient() as platform:
        logs_by_replica = platform.get(f"/v1/services/{name}/logs")
    for replica, text in logs_by_replica.items():
        console.print(f"[bold]--- replica {replica}[/bold]")
        console.print(text, markup=False, highlight=False, soft_wrap=True, end="" if text.endswith("\n") else "\n")

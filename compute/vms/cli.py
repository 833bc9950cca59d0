"""`cxmpute vms create|ls|show|console|start|stop|snapshot|rm`: virtual machines through the platform API.

Signs in with ``CXMPUTE_WALLET_KEY`` (machines are billed to a wallet's balance through a market lease).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from cxmpute.http import client
from cxmpute.settings import get_settings

app = typer.Typer(help="Virtual machines: boot a Stxrage image (or kernel and initramfs) with your SSH key, "
                       "stop, start, snapshot, restore, destroy. Billed per running second.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _call(method: str, path: str, body: dict | None = None, params: dict | None = None) -> Any:
    from compute.cli import _token

    settings = get_settings()
    if not settings.wallet_key:
        err.print("[red]error (wallet):[/red] set CXMPUTE_WALLET_KEY: machines are billed to a signed-in account")
        raise typer.Exit(1)
    try:
        with client(settings.resolved_api_url, timeout=300.0, headers={"Authorization": f"Bearer {_token()}"}) as http:
            resp = http.request(method, path, json=body, params=params)
    except httpx.HTTPError as exc:
        err.print(f"[red]error:[/red] cannot reach the platform API at {settings.resolved_api_url}: {exc}")
        raise typer.Exit(1) from None
    if resp.is_success:
        return resp.json() if "json" in resp.headers.get("content-type", "") else resp.text
    try:
        data = resp.json()
    except ValueError:
        data = {"detail": resp.text}
    field = data.get("field") if isinstance(data, dict) else None
    detail = data.get("detail") if isinstance(data, dict) else data
    err.print(f"[red]error {resp.status_code}{f' ({field})' if field else ''}:[/red] {detail}")
    raise typer.Exit(1)


def _row(vm: dict) -> None:
    console.print(f"{vm['id']}  {vm['name']}  {vm['status']}  {vm['vcpus']} vCPU  {vm['memory_mb']} MiB  "
                  f"{vm['disk_mb']} MiB disk  {vm['accel']}  billed {vm['billed_s']} s ({vm['paid_gwei']} gwei)")


@app.command()
def create(
    ssh_key: Path = typer.Option(Path.home() / ".ssh" / "id_ed25519.pub", "--ssh-key", exists=True, dir_okay=False,
                                 help="Your SSH public key file, installed as root's authorized_keys"),
    max_price: int = typer.Option(..., "--max-price", min=1, help="Highest ask per compute-unit-second (gwei)"),
    min_price: int = typer.Option(0, "--min-price", min=0, help="Lowest ask per compute-unit-second (gwei)"),
    image: str | None = typer.Option(None, help="Stxrage CID of a disk image (raw or qcow2)"),
    kernel: str | None = typer.Option(None, help="Stxrage CID of a kernel to boot directly"),
    initrd: str | None = typer.Option(None, help="Stxrage CID of its initramfs"),
    cmdline: str = typer.Option("console=ttyS0", help="Kernel command line (with --kernel)"),
    vcpus: int = typer.Option(1, min=1, max=64), memory_mb: int = typer.Option(256, min=64),
    disk_mb: int = typer.Option(1024, min=1), name: str = typer.Option("", help="Shown in listings"),
    max_duration: int = typer.Option(3600, "--max-duration", min=1, help="Seconds the machine may exist (escrowed; only running seconds are billed)"),
) -> None:
    """Create and boot a machine."""
    vm = _call("POST", "/v1/vms", {
        "name": name, "image": image, "kernel": kernel, "initrd": initrd, "cmdline": cmdline,
        "ssh_key": ssh_key.read_text().strip(), "vcpus": vcpus, "memory_mb": memory_mb, "disk_mb": disk_mb,
        "price_min_gwei": min_price, "price_max_gwei": max_price, "max_duration_s": max_duration})
    _row(vm)


@app.command("ls")
def list_vms(all_: bool = typer.Option(False, "--all", help="Include destroyed machines")) -> None:
    """Your machines."""
    table = Table("id", "name", "status", "vCPU", "MiB", "disk MiB", "accel", "billed s", "paid gwei", "snapshots")
    for vm in _call("GET", "/v1/vms", params={"all": all_}):
        table.add_row(vm["id"], vm["name"], vm["status"], str(vm["vcpus"]), str(vm["memory_mb"]), str(vm["disk_mb"]),
                      vm["accel"], str(vm["billed_s"]), str(vm["paid_gwei"]),
                      ", ".join(s["name"] for s in vm["snapshots"]))
    console.print(table)


@app.command()
def show(vm_id: str) -> None:
    """One machine, as JSON."""
    console.print_json(data=_call("GET", f"/v1/vms/{vm_id}"))


@app.command("console")
def console_tail(vm_id: str, max_bytes: int = typer.Option(65536, min=1)) -> None:
    """The tail of the machine's serial console."""
    typer.echo(_call("GET", f"/v1/vms/{vm_id}/console", params={"max_bytes": max_bytes}), nl=False)


@app.command()
def start(vm_id: str, snapshot: str | None = typer.Option(None, help="Restore this snapshot")) -> None:
    """Boot a stopped machine, or restore one of its snapshots."""
    _row(_call("POST", f"/v1/vms/{vm_id}/start", {"snapshot": snapshot}))


@app.command()
def stop(vm_id: str) -> None:
    """Power a machine off."""
    _row(_call("POST", f"/v1/vms/{vm_id}/stop"))


@app.command()
def snapshot(vm_id: str, name: str) -> None:
    """Snapshot a machine (with its memory while it runs)."""
    _row(_call("POST", f"/v1/vms/{vm_id}/snapshot", {"name": name}))


@app.command("rm")
def remove(vm_id: str) -> None:
    """Destroy a machine: its process and files go, its lease ends and unused escrow is refunded."""
    _row(_call("DELETE", f"/v1/vms/{vm_id}"))

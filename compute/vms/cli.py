"""`cxmpute vms create|ls|show|console|start|stop|snapshot|rm`: virtual machines through the platform API.

Machines are billed to the signed-in wallet's balance through a market lease; the platform client signs in
with ``CXMPUTE_WALLET_KEY``, else this machine's local wallet.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Column, Table

from cxmpute.client import PlatformClient
from cxmpute.errors import CxmputeError
from cxmpute.settings import get_settings

app = typer.Typer(
    help="Virtual machines: boot a Stxrage image (or kernel and initramfs) with your SSH key, "
    "stop, start, snapshot, restore, destroy. Billed per running second.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)
DEFAULT_KEY = "~/.ssh/id_ed25519.pub"
# Creating a machine boots it before the API answers.
CREATE_TIMEOUT_S = 300.0


def _row(vm: dict) -> None:
    ssh = f"  ssh -p {vm['ssh_port']} root@{vm['ssh_host']}" if vm.get("ssh_port") else ""
    console.print(
        f"{vm['id']}  {vm['name']}  {vm['status']}  {vm['vcpus']} vCPU  {vm['memory_mb']} MiB  "
        f"{vm['disk_mb']} MiB disk  {vm['accel']}  billed {vm['billed_s']} s ({vm['paid_gwei']} gwei)"
        f"{ssh}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _generated_key() -> Path:
    """The public half of a key pair kept in the data dir for machines, made on first use."""
    private = get_settings().data_dir / "ssh" / "id_ed25519"
    public = private.with_suffix(".pub")
    if public.exists() and private.exists():
        return public
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Made anew with 0600 from the start (a leftover half of a pair may have other modes): the private key is
    # never readable by others, not even for a moment.
    private.unlink(missing_ok=True)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
            )
        )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        + b" cxmpute\n"
    )
    err.print(
        f"made an SSH key pair for your machines: {private} (log in with `ssh -i {private} ...`)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return public


def _ssh_key(given: str | None) -> str:
    if given is not None:
        path = Path(given).expanduser()
        if not path.is_file():
            raise CxmputeError(f"no SSH public key file at {given}", field="--ssh-key")
    elif Path(DEFAULT_KEY).expanduser().is_file():
        path = Path(DEFAULT_KEY).expanduser()
    else:
        path = _generated_key()
    key = path.read_text().strip()
    if not key:
        raise CxmputeError(f"{path} is empty: give an SSH public key file", field="--ssh-key")
    return key


@app.command()
def create(
    ssh_key: str | None = typer.Option(
        None,
        "--ssh-key",
        help=f"Your SSH public key file, installed as root's authorized_keys; default "
        f"{DEFAULT_KEY}, else a key pair made in the data dir",
    ),
    max_price: int = typer.Option(..., "--max-price", min=1, help="Highest ask per compute-unit-second (gwei)"),
    min_price: int = typer.Option(0, "--min-price", min=0, help="Lowest ask per compute-unit-second (gwei)"),
    image: str | None = typer.Option(None, help="Stxrage CID of a disk image (raw or qcow2)"),
    kernel: str | None = typer.Option(None, help="Stxrage CID of a kernel to boot directly"),
    initrd: str | None = typer.Option(None, help="Stxrage CID of its initramfs"),
    cmdline: str = typer.Option("console=ttyS0", help="Kernel command line (with --kernel)"),
    vcpus: int = typer.Option(1, min=1, max=64),
    memory_mb: int = typer.Option(256, min=64),
    disk_mb: int = typer.Option(1024, min=1),
    name: str = typer.Option("", help="Shown in listings"),
    max_duration: int = typer.Option(
        3600, "--max-duration", min=1, help="Seconds the machine may exist (escrowed; only running seconds are billed)"
    ),
) -> None:
    """Create and boot a machine."""
    body = {
        "name": name,
        "image": image,
        "kernel": kernel,
        "initrd": initrd,
        "cmdline": cmdline,
        "ssh_key": _ssh_key(ssh_key),
        "vcpus": vcpus,
        "memory_mb": memory_mb,
        "disk_mb": disk_mb,
        "price_min_gwei": min_price,
        "price_max_gwei": max_price,
        "max_duration_s": max_duration,
    }
    with PlatformClient(timeout=CREATE_TIMEOUT_S) as platform:
        _row(platform.post("/v1/vms", json=body))


@app.command("ls")
def list_vms(
    all_: bool = typer.Option(False, "--all", help="Include destroyed machines"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON"),
) -> None:
    """Your machines."""
    with PlatformClient() as platform:
        vms = platform.get("/v1/vms", params={"all": all_})
    if as_json:
        typer.echo(json.dumps(vms, indent=2))
        return
    # An id is what the other commands take: folded onto more lines, never cut.
    table = Table(
        Column("id", overflow="fold"),
        "name",
        "status",
        "vCPU",
        "MiB",
        "disk MiB",
        "accel",
        "billed s",
        "paid gwei",
        "snapshots",
    )
    for vm in vms:
        table.add_row(
            vm["id"],
            vm["name"],
            vm["status"],
            str(vm["vcpus"]),
            str(vm["memory_mb"]),
            str(vm["disk_mb"]),
            vm["accel"],
            str(vm["billed_s"]),
            str(vm["paid_gwei"]),
            ", ".join(s["name"] for s in vm["snapshots"]),
        )
    console.print(table)


@app.command()
def show(vm_id: str) -> None:
    """One machine, as JSON."""
    with PlatformClient() as platform:
        typer.echo(json.dumps(platform.get(f"/v1/vms/{vm_id}"), indent=2))


@app.command("console")
def console_tail(vm_id: str, max_bytes: int = typer.Option(65536, min=1)) -> None:
    """The tail of the machine's serial console."""
    with (
        PlatformClient() as platform,
        platform.stream("GET", f"/v1/vms/{vm_id}/console", params={"max_bytes": max_bytes}) as resp,
    ):
        for chunk in resp.iter_bytes():
            typer.echo(chunk, nl=False)


@app.command()
def start(vm_id: str, snapshot: str | None = typer.Option(None, help="Restore this snapshot")) -> None:
    """Boot a stopped machine, or restore one of its snapshots."""
    with PlatformClient(timeout=CREATE_TIMEOUT_S) as platform:
        _row(platform.post(f"/v1/vms/{vm_id}/start", json={"snapshot": snapshot}))


@app.command()
def stop(vm_id: str) -> None:
    """Power a machine off."""
    with PlatformClient(timeout=CREATE_TIMEOUT_S) as platform:
        _row(platform.post(f"/v1/vms/{vm_id}/stop"))


@app.command()
def snapshot(vm_id: str, name: str) -> None:
    """Snapshot a machine (with its memory while it runs)."""
    with PlatformClient(timeout=CREATE_TIMEOUT_S) as platform:
        _row(platform.post(f"/v1/vms/{vm_id}/snapshot", json={"name": name}))


@app.command("rm")
def remove(vm_id: str) -> None:
    """Destroy a machine: its process and files go, its lease ends and unused escrow is refunded."""
    with PlatformClient(timeout=CREATE_TIMEOUT_S) as platform:
        _row(platform.delete(f"/v1/vms/{vm_id}"))

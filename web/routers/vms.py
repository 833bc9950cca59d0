"""Virtual machines: create from a Stxrage image (or kernel and initramfs) with your SSH key, start, stop,
snapshot, restore and destroy. Each machine holds a market lease (kind ``vm``) billed per second while it runs."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import PlainTextResponse

from compute.identity.tokens import Principal
from compute.vms import service
from compute.vms.models import SnapshotIn, StartIn, VmCreate, VmOut
from cxmpute.logging import get_logger
from web.deps import NetworkDep, SettingsDep, signed_in

log = get_logger(__name__)


router = APIRouter(prefix="/v1/vms", tags=["vms"])
user = signed_in("market")


@router.post(
    "",
    status_code=201,
    response_model=VmOut,
    summary="Create and boot a virtual machine",
    description="Matches a `vm` provision within your price range and opens its per-second lease (escrow "
    "for `max_duration_s` running seconds), makes a disk of `disk_mb` over the image, and "
    "boots. Your SSH key reaches the guest through fw_cfg `opt/cxmpute/ssh_key`; the guest's "
    "only network is its SSH port, forwarded at `ssh_host:ssh_port`. 503 when "
    "this platform has no hypervisor; 409 with `no_match` when no provision fits.",
)
def create(settings: SettingsDep, net: NetworkDep, body: VmCreate, principal: Principal = Depends(user)) -> VmOut:
    return service.create(net, settings, principal.address, body)


@router.get("", response_model=list[VmOut], summary="Your virtual machines, newest first")
def list_vms(
    settings: SettingsDep,
    net: NetworkDep,
    include_destroyed: bool = Query(False, alias="all", description="Include destroyed machines"),
    principal: Principal = Depends(user),
) -> list[VmOut]:
    return service.list_for(net, settings, principal.address, include_destroyed=include_destroyed)


@router.get("/{vm_id}", response_model=VmOut, summary="A virtual machine, with its billing so far")
def get_vm(settings: SettingsDep, net: NetworkDep, vm_id: str, principal: Principal = Depends(user)) -> VmOut:
    return service.get(net, settings, principal.address, vm_id)


@router.get("/{vm_id}/console", response_class=PlainTextResponse, summary="The tail of its serial console")
def get_console(
    settings: SettingsDep,
    net: NetworkDep,
    vm_id: str,
    max_bytes: int = Query(65536, ge=1, le=4 * 2**20),
    principal: Principal = Depends(user),
) -> str:
    return service.console(net, settings, principal.address, vm_id, max_bytes)


@router.post(
    "/{vm_id}/start",
    response_model=VmOut,
    summary="Boot a stopped machine, or restore a snapshot",
    description="With `snapshot`, a snapshot taken while running resumes exactly where it was (memory "
    "included); one taken while stopped boots from its disk.",
)
def start(
    settings: SettingsDep,
    net: NetworkDep,
    vm_id: str,
    body: StartIn = Body(default_factory=StartIn),
    principal: Principal = Depends(user),
) -> VmOut:
    return service.start(net, settings, principal.address, vm_id, body.snapshot)


@router.post("/{vm_id}/stop", response_model=VmOut, summary="Power off (ACPI, then forced after a grace period)")
def stop(settings: SettingsDep, net: NetworkDep, vm_id: str, principal: Principal = Depends(user)) -> VmOut:
    return service.stop(net, settings, principal.address, vm_id)


@router.post(
    "/{vm_id}/snapshot",
    response_model=VmOut,
    summary="Snapshot the machine under a name",
    description="While running: disk, memory and device state (QEMU savevm); while stopped: the disk.",
)
def snapshot(
    settings: SettingsDep, net: NetworkDep, vm_id: str, body: SnapshotIn, principal: Principal = Depends(user)
) -> VmOut:
    return service.snapshot(net, settings, principal.address, vm_id, body.name)


@router.delete(
    "/{vm_id}",
    response_model=VmOut,
    summary="Destroy: machine and files gone, lease ended",
    description="Bills the last running seconds and refunds the rest of the escrow.",
)
def destroy(settings: SettingsDep, net: NetworkDep, vm_id: str, principal: Principal = Depends(user)) -> VmOut:
    return service.destroy(net, settings, principal.address, vm_id)

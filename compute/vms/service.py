"""Lifecycle of users' machines: create, start, stop, snapshot, restore, destroy — and per-second billing.

Each machine holds one per-second market lease (kind ``vm``, matched within the user's price range), opened at
creation and ended at destruction or when the machine's time is up, which refunds the escrow not used.
Running time is metered into that lease
in whole seconds: periodically while it runs (:func:`meter_running`) and when it stops, each step an idempotent
usage record posted in the same transaction that advances the machine's billing position. A lease that ends
(out of funds, expired, provider lost) stops the machine.

Machines run on this host through the ``vm`` runtime, their files under ``<home>/vms/<id>``: the embedded
default, where the platform machine is the provider machine. They are not yet dispatched to a remote provider's
worker, so with remote providers the lease pays a provider whose machine does not run the VM.
"""

from __future__ import annotations

import math
import shutil
import threading
import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from compute.errors import ComputeError
from compute.market import leases
from compute.market.demand import MatchRequest
from compute.market.leases import UsageIn
from compute.models import Lease, aware, utcnow
from compute.network import Network
from compute.provisions import Resources
from compute.runtimes import RuntimeUnavailable, runtime_registry
from compute.runtimes.qemu import Machine, MachineConfig, MachineError, QemuRuntime
from compute.vms.models import LEASE_MARGIN_S, SnapshotOut, VmCreate, VmOut
from compute.vms.store import Vm
from cxmpute.errors import Conflict, CxmputeError, Forbidden, NotFound
from cxmpute.logging import get_logger
from cxmpute.ports import free_port
from cxmpute.settings import Settings

log = get_logger(__name__)
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(vm_id: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(vm_id, threading.Lock())


def runtime(settings: Settings, *, checked: bool = True) -> QemuRuntime:
    """The ``vm`` runtime; with ``checked``, a 503 saying why when this machine cannot run one."""
    registry = runtime_registry(settings)
    found = registry.get("vm") if checked else registry.runtime("vm")
    if not isinstance(found, QemuRuntime):
        raise RuntimeUnavailable("the 'vm' runtime registered here is not a QEMU driver", field="runtime")
    return found


def _machine(settings: Settings, vm_id: str, *, checked: bool = True) -> Machine:
    return runtime(settings, checked=checked).machine(settings.data_dir / "vms" / vm_id, checked=checked)


def _config(row: Vm, ssh_port: int) -> MachineConfig:
    return MachineConfig(
        name=row.id,
        vcpus=row.vcpus,
        memory_mb=row.memory_mb,
        ssh_key=row.ssh_key,
        kernel=row.kernel is not None,
        initrd=row.initrd is not None,
        cmdline=row.cmdline,
        ssh_port=ssh_port,
        accel=row.accel,
    )


def _out(session: Session, row: Vm, settings: Settings) -> VmOut:
    lease = session.get(Lease, row.lease_id)
    return VmOut(
        id=row.id,
        name=row.name,
        owner=row.owner,
        status=row.status,
        vcpus=row.vcpus,
        memory_mb=row.memory_mb,
        disk_mb=row.disk_mb,
        image=row.image,
        kernel=row.kernel,
        initrd=row.initrd,
        accel=row.accel,
        lease_id=row.lease_id,
        provider=row.provider,
        price_gwei=lease.price_gwei,
        compute_units=lease.compute_units,
        billed_s=row.billed_s,
        paid_gwei=lease.paid_gwei,
        lease_status=lease.status,
        running_since=row.running_since,
        ends_at=row.ends_at,
        ssh_host=settings.vm_ssh_host,
        ssh_port=row.ssh_port if row.status == "running" else None,
        snapshots=[SnapshotOut(**s) for s in row.snapshots],
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _owned(session: Session, owner: str, vm_id: str, *, lock: bool = False) -> Vm:
    row = session.get(Vm, vm_id, with_for_update=lock, populate_existing=True)
    if row is None:
        raise NotFound(f"no vm {vm_id}", field="vm_id")
    if row.owner != owner:
        raise Forbidden("the vm belongs to another account", field="vm_id")
    return row


def _fetch(settings: Settings, owner: str, cid: str, dest: Path, field: str) -> None:
    from stxrage import open_storage

    try:
        open_storage(settings).get_file(cid, dest, owner=owner)
    except CxmputeError as exc:
        status = exc.status_code if 400 <= exc.status_code < 500 else 422
        raise ComputeError(f"{field} {cid}: {exc.message}", field=field, status_code=status) from None


def create(net: Network, settings: Settings, owner: str, req: VmCreate) -> VmOut:
    """Fetch the boot artifacts, open the lease, make the disk and boot the machine."""
    rt = runtime(settings)
    vm_id = str(uuid.uuid4())
    machine = rt.machine(settings.data_dir / "vms" / vm_id)
    machine.path.mkdir(parents=True)
    lease = None
    try:
        for field, cid, name in (
            ("image", req.image, "base.img"),
            ("kernel", req.kernel, "kernel"),
            ("initrd", req.initrd, "initrd"),
        ):
            if cid is not None:
                _fetch(settings, owner, cid, machine.path / name, field)
        machine.create_disk(req.disk_mb, machine.path / "base.img" if req.image else None)
        lease = net.market.place(
            owner,
            MatchRequest(
                kind="vm",
                resources=Resources(cpu=req.vcpus, memory_mb=req.memory_mb, disk_gb=math.ceil(req.disk_mb / 1024)),
                image=req.image or req.kernel,
                region=req.region,
                price_min_gwei=req.price_min_gwei,
                price_max_gwei=req.price_max_gwei,
                term="seconds",
                duration_s=req.max_duration_s + LEASE_MARGIN_S,
            ),
        )
        now = utcnow()
        row = Vm(
            id=vm_id,
            owner=owner,
            name=req.name or vm_id[:8],
            status="running",
            vcpus=req.vcpus,
            memory_mb=req.memory_mb,
            disk_mb=req.disk_mb,
            image=req.image,
            kernel=req.kernel,
            initrd=req.initrd,
            cmdline=req.cmdline,
            ssh_key=req.ssh_key,
            accel=rt.accel(),
            lease_id=lease.id,
            provider=lease.provider,
            segment=1,
            running_since=None,
            segment_billed_s=0,
            billed_s=0,
            ends_at=aware(lease.started_at) + timedelta(seconds=req.max_duration_s),
            snapshots=[],
            error=None,
            created_at=now,
            updated_at=now,
        )
        row.ssh_port = free_port(settings.vm_ssh_host)
        try:
            machine.launch(_config(row, row.ssh_port))
        except MachineError as exc:
            # /dev/kvm may open yet refuse this CPU (nested virtualization, say): emulate instead, and keep
            # to it, since a saved state only loads under the accelerator that saved it.
            if row.accel != "kvm" or settings.vm_accel != "auto":
                raise
            log.warning("vm %s: KVM failed (%s); using software emulation", vm_id, exc.message)
            row.accel = "tcg"
            machine.launch(_config(row, row.ssh_port))
        row.running_since = utcnow()
        with net.store.write() as session:
            session.add(row)
            session.flush()
            return _out(session, row, settings)
    except BaseException:
        machine.destroy()
        if lease is not None:
            net.market.end(lease.id, "user-cancelled", owner)
        raise


def _settle(session: Session, net: Network, row: Vm, *, final: bool) -> bool:
    """Bill the current run up to now, or to the machine's end of time (a started second counts when ``final``);
    False once the lease has ended."""
    if row.status != "running" or row.running_since is None:
        return True
    elapsed = max(0.0, (min(utcnow(), aware(row.ends_at)) - aware(row.running_since)).total_seconds())
    due = math.ceil(elapsed) if final else math.floor(elapsed)
    lease = session.get(Lease, row.lease_id, populate_existing=True)
    if due > row.segment_billed_s and lease.status == "active":
        usage = leases.meter_in(
            session,
            net.domain,
            row.lease_id,
            UsageIn(seconds=due - row.segment_billed_s, idempotency_key=f"vm:{row.id}:{row.segment}:{due}"),
            caller=row.provider,
        )
        row.billed_s += usage.seconds
        row.segment_billed_s = due
        return usage.lease.status == "active"
    return lease.status == "active"


def _stopped(row: Vm, error: str | None = None) -> None:
    row.status, row.running_since, row.segment_billed_s = "stopped", None, 0
    row.error = error
    row.updated_at = utcnow()


def get(net: Network, settings: Settings, owner: str, vm_id: str) -> VmOut:
    with net.store.read() as session:
        return _out(session, _owned(session, owner, vm_id), settings)


def list_for(net: Network, settings: Settings, owner: str, include_destroyed: bool = False) -> list[VmOut]:
    with net.store.read() as session:
        stmt = select(Vm).where(Vm.owner == owner)
        if not include_destroyed:
            stmt = stmt.where(Vm.status != "destroyed")
        return [_out(session, row, settings) for row in session.scalars(stmt.order_by(Vm.created_at.desc()))]


def console(net: Network, settings: Settings, owner: str, vm_id: str, max_bytes: int = 65536) -> str:
    """The tail of the machine's serial console."""
    with net.store.read() as session:
        row = _owned(session, owner, vm_id)
    path = settings.data_dir / "vms" / row.id / "console.log"
    if row.status == "destroyed" or not path.exists():
        return ""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - max_bytes))
        return f.read().decode("utf-8", "replace")


def start(net: Network, settings: Settings, owner: str, vm_id: str, snapshot: str | None = None) -> VmOut:
    with _lock(vm_id):
        with net.store.read() as session:
            row = _owned(session, owner, vm_id)
            lease = session.get(Lease, row.lease_id)
        if row.status == "destroyed":
            raise Conflict("the vm was destroyed", field="vm_id")
        machine = _machine(settings, vm_id)
        if row.status == "running" and machine.running():
            raise Conflict("the vm is running; stop it first", field="vm_id")
        if lease.status != "active":
            raise Conflict(f"the vm's lease has ended ({lease.end_reason}); create a new vm", field="vm_id")
        if utcnow() >= aware(row.ends_at):
            raise Conflict("the vm's time is up (max_duration_s); create a new vm", field="vm_id")
        loadvm = None
        if snapshot is not None:
            saved = next((s for s in row.snapshots if s["name"] == snapshot), None)
            if saved is None:
                raise NotFound(f"no snapshot {snapshot!r}", field="snapshot")
            if saved["memory"]:
                loadvm = snapshot
            else:
                machine.revert_disk(snapshot)
        ssh_port = free_port(settings.vm_ssh_host)
        machine.launch(_config(row, ssh_port), loadvm=loadvm)
        with net.store.write() as session:
            row = _owned(session, owner, vm_id, lock=True)
            _settle(session, net, row, final=True)  # a run whose guest powered itself off, not yet swept
            row.status, row.segment, row.segment_billed_s = "running", row.segment + 1, 0
            row.running_since, row.ssh_port, row.error, row.updated_at = utcnow(), ssh_port, None, utcnow()
            session.flush()
            return _out(session, row, settings)


def stop(net: Network, settings: Settings, owner: str, vm_id: str) -> VmOut:
    """Power the machine off (ACPI, then QMP ``quit`` after the grace period) and bill its run."""
    with _lock(vm_id):
        with net.store.read() as session:
            row = _owned(session, owner, vm_id)
        if row.status == "destroyed":
            raise Conflict("the vm was destroyed", field="vm_id")
        if row.status == "running":
            _machine(settings, vm_id).stop()
        with net.store.write() as session:
            row = _owned(session, owner, vm_id, lock=True)
            _settle(session, net, row, final=True)
            if row.status == "running":
                _stopped(row)
            session.flush()
            return _out(session, row, settings)


def snapshot(net: Network, settings: Settings, owner: str, vm_id: str, name: str) -> VmOut:
    """Save the machine under ``name`` inside its disk: with memory and device state while it runs."""
    with _lock(vm_id):
        with net.store.read() as session:
            row = _owned(session, owner, vm_id)
        if row.status == "destroyed":
            raise Conflict("the vm was destroyed", field="vm_id")
        if any(s["name"] == name for s in row.snapshots):
            raise Conflict(f"the vm already has a snapshot {name!r}", field="name")
        machine = _machine(settings, vm_id)
        memory = row.status == "running" and machine.running()
        if memory:
            machine.savevm(name)
        else:
            machine.snapshot_disk(name)
        with net.store.write() as session:
            row = _owned(session, owner, vm_id, lock=True)
            row.snapshots = [*row.snapshots, {"name": name, "created_at": utcnow().isoformat(), "memory": memory}]
            row.updated_at = utcnow()
            session.flush()
            return _out(session, row, settings)


def destroy(net: Network, settings: Settings, owner: str, vm_id: str) -> VmOut:
    """End the machine, remove its files and end its lease (the unused escrow goes back)."""
    with _lock(vm_id):
        with net.store.read() as session:
            row = _owned(session, owner, vm_id)
        if row.status == "destroyed":
            with net.store.read() as session:
                return _out(session, row, settings)
        machine = _machine(settings, vm_id, checked=False)
        machine.kill()
        with net.store.write() as session:
            row = _owned(session, owner, vm_id, lock=True)
            _settle(session, net, row, final=True)
            row.status, row.running_since, row.snapshots, row.updated_at = "destroyed", None, [], utcnow()
            leases.end_in(session, row.lease_id, "user-cancelled", owner)
            session.flush()
        # Files go only once the machine's record says destroyed: a crash before leaves them for a retry.
        shutil.rmtree(machine.path, ignore_errors=True)
        with net.store.read() as session:
            return _out(session, _owned(session, owner, vm_id), settings)


def meter_running(net: Network, settings: Settings) -> list[str]:
    """Bill every running machine up to now; stop those whose time is up, whose lease ended or whose guest
    powered off. A machine whose time is up has its lease ended too (the unused escrow goes back).

    Returns the ids of the machines stopped. Safe to run from any thread.
    """
    with net.store.read() as session:
        running = session.scalars(select(Vm.id).where(Vm.status == "running")).all()
    stopped = []
    for vm_id in running:
        with _lock(vm_id):
            machine = _machine(settings, vm_id, checked=False)
            alive = machine.running()
            with net.store.write() as session:
                row = session.get(Vm, vm_id, with_for_update=True, populate_existing=True)
                if row.status != "running":
                    continue
                time_up = utcnow() >= aware(row.ends_at)
                active = _settle(session, net, row, final=time_up or not alive)
                if alive and active and not time_up:
                    continue
                if alive:
                    machine.stop(0)
                if time_up and active:
                    leases.end_in(session, row.lease_id, "completed", None)
                    _stopped(row, "the machine's time is up (max_duration_s)")
                else:
                    lease = session.get(Lease, row.lease_id)
                    _stopped(row, None if active else f"lease ended ({lease.end_reason})")
                stopped.append(vm_id)
    return stopped

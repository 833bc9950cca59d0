"""VMs end to end: a provider offers `vm` only with QEMU present; a user boots the tiny guest under software
emulation with their SSH key, stops and starts it, snapshots and restores it, and destroys it — billed per
running second through the market lease, over the HTTP API and the CLI."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fixtures.tiny_guest import fingerprint

pytestmark = pytest.mark.slow


def _ssh_key() -> str:
    public = Ed25519PrivateKey.generate().public_key()
    return public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " me@x"


def _console(platform, auth, vm_id: str) -> str:
    resp = httpx.get(f"{platform.url}/v1/vms/{vm_id}/console", params={"max_bytes": 4 * 2**20}, headers=auth)
    assert resp.status_code == 200, resp.text
    return resp.text


def _wait_console(platform, auth, vm_id: str, pattern: str, after: int = 0, timeout: float = 120) -> re.Match:
    """The first match of ``pattern`` in the console past offset ``after``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = re.search(pattern, _console(platform, auth, vm_id)[after:])
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"no {pattern!r} on the console:\n{_console(platform, auth, vm_id)[after:][-3000:]}")


def _put(platform, auth, data: bytes, name: str) -> str:
    resp = httpx.post(f"{platform.url}/v1/storage/files", params={"name": name}, content=data, headers=auth, timeout=60)
    assert resp.status_code == 201, resp.text
    return resp.json()["file"]["cid"]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _cli(platform, wallet, *args: str) -> subprocess.CompletedProcess:
    env = {
        **platform.env,
        "CXMPUTE_HOME": str(platform.home / f"cli-{wallet.address[:10]}"),
        "CXMPUTE_WALLET_KEY": wallet.key.to_0x_hex(),
        "COLUMNS": "250",
    }
    return subprocess.run(
        [sys.executable, "-m", "cxmpute.cli", "vms", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_only_a_provider_with_qemu_offers_vms(vm_platform):
    with_qemu, without = vm_platform.providers["with-qemu"], vm_platform.providers["without-qemu"]
    offers = httpx.get(f"{vm_platform.url}/v1/market/provisions", params={"kind": "vm"}).json()
    assert {p["provider"] for p in offers} == {with_qemu}
    agents = httpx.get(f"{vm_platform.url}/v1/market/provisions", params={"kind": "agent"}).json()
    assert {p["provider"] for p in agents} == {with_qemu, without}
    profiles = {a: httpx.get(f"{vm_platform.url}/v1/providers/{a}").json()["profile"] for a in (with_qemu, without)}
    assert "vm" in profiles[with_qemu]["runtimes"]
    assert "vm" not in profiles[without]["runtimes"] and "sandbox" in profiles[without]["runtimes"]


def test_bad_requests_name_the_field_and_move_no_money(vm_platform):
    wallet, auth = vm_platform.user()
    url = f"{vm_platform.url}/v1/vms"
    before = httpx.get(f"{vm_platform.url}/v1/account/balance", headers=auth).json()["user_gwei"]
    kernel = _put(vm_platform, auth, b"refused before it would boot", "vmlinuz")
    body = {"kernel": kernel, "ssh_key": _ssh_key(), "price_max_gwei": 100, "max_duration_s": 60}

    resp = httpx.post(url, json={**body, "ssh_key": "ssh-ed25519 not-base64!"}, headers=auth)
    assert resp.status_code == 422 and "ssh_key" in resp.text
    resp = httpx.post(url, json={k: v for k, v in body.items() if k != "kernel"}, headers=auth)
    assert resp.status_code == 422 and "image" in resp.text
    resp = httpx.post(url, json={**body, "kernel": "bafy-missing"}, headers=auth)
    assert resp.status_code in (400, 404) and resp.json()["field"] == "kernel"
    resp = httpx.post(url, json={**body, "price_max_gwei": 1}, headers=auth)
    assert resp.status_code == 409 and resp.json()["no_match"]
    resp = httpx.post(url, json={**body, "memory_mb": 8192}, headers=auth)  # more than any vm provision has
    assert resp.status_code == 409
    assert httpx.post(url, json=body).status_code == 401
    assert httpx.get(f"{url}/nope", headers=auth).status_code == 404

    assert httpx.get(url, headers=auth).json() == []
    assert httpx.get(f"{vm_platform.url}/v1/account/balance", headers=auth).json()["user_gwei"] == before
    assert httpx.get(f"{vm_platform.url}/v1/leases", headers=auth).json() == []
    failed = _cli(vm_platform, wallet, "snapshot", "nope", "not a name!")
    assert failed.returncode == 1 and "name" in failed.stderr
    key_file = vm_platform.home / f"{wallet.address}.pub"
    key_file.write_text(body["ssh_key"] + "\n")
    failed = _cli(
        vm_platform,
        wallet,
        "create",
        "--ssh-key",
        str(key_file),
        "--kernel",
        kernel,
        "--max-price",
        "1",
        "--max-duration",
        "60",
    )
    assert failed.returncode == 1 and "error (price_max_gwei)" in failed.stderr, failed.stderr


def test_vm_lifecycle(vm_platform, vm_guest):
    wallet, auth = vm_platform.user()
    other_wallet, other = vm_platform.user()
    api = vm_platform.url
    key = _ssh_key()
    kernel, initrd = _put(vm_platform, auth, vm_guest[0], "vmlinuz"), _put(vm_platform, auth, vm_guest[1], "initrd")
    image = _put(vm_platform, auth, b"41".ljust(4096, b"\0"), "disk.img")  # the guest counts its boots here
    deposit = httpx.get(f"{api}/v1/account/balance", headers=auth).json()["user_gwei"]

    # Create: the lease is matched on the provider with QEMU; the guest boots from the Stxrage disk under TCG.
    resp = httpx.post(
        f"{api}/v1/vms",
        headers=auth,
        timeout=120,
        json={
            "name": "tiny",
            "image": image,
            "kernel": kernel,
            "initrd": initrd,
            "cmdline": "console=ttyS0 quiet",
            "ssh_key": key,
            "vcpus": 1,
            "memory_mb": 256,
            "disk_mb": 64,
            "price_max_gwei": 50,
            "max_duration_s": 600,
        },
    )
    assert resp.status_code == 201, resp.text
    vm = resp.json()
    vm_id = vm["id"]
    assert vm["status"] == "running" and vm["accel"] == "tcg"
    assert vm["provider"] == vm_platform.providers["with-qemu"] and vm["price_gwei"] == 10
    machine = vm_platform.home / "platform" / "vms" / vm_id
    assert machine.is_dir()
    _wait_console(vm_platform, auth, vm_id, rf"CXMPUTE-VM-READY {fingerprint(key)} boot=42\b")
    assert httpx.get(f"{api}/v1/vms/{vm_id}", headers=other).status_code == 403
    socket.create_connection((vm["ssh_host"], vm["ssh_port"]), timeout=5).close()  # forwarded to the guest's :22
    assert httpx.post(f"{api}/v1/vms/{vm_id}/start", headers=auth).status_code == 409  # already running

    # Snapshot while running (memory included), once the guest has ticked a few times.
    _wait_console(vm_platform, auth, vm_id, r"CXMPUTE-TICK 3 ")
    vm = httpx.post(f"{api}/v1/vms/{vm_id}/snapshot", json={"name": "ticking"}, headers=auth, timeout=60).json()
    assert [(s["name"], s["memory"]) for s in vm["snapshots"]] == [("ticking", True)]
    snap_tick = int(re.findall(r"CXMPUTE-TICK (\d+) ", _console(vm_platform, auth, vm_id))[-1])
    assert httpx.post(f"{api}/v1/vms/{vm_id}/snapshot", json={"name": "ticking"}, headers=auth).status_code == 409

    # Stop: the process is gone and the run is billed per second.
    pid = int((machine / "qemu.pid").read_text())
    vm = httpx.post(f"{api}/v1/vms/{vm_id}/stop", headers=auth, timeout=60).json()
    assert vm["status"] == "stopped" and not _alive(pid) and vm["ssh_port"] is None
    assert vm["billed_s"] >= 3 and vm["paid_gwei"] == vm["billed_s"] * 10 * vm["compute_units"]

    # Start: a cold boot from the same disk counts a second boot.
    mark = len(_console(vm_platform, auth, vm_id))
    assert httpx.post(f"{api}/v1/vms/{vm_id}/start", headers=auth, timeout=60).json()["status"] == "running"
    _wait_console(vm_platform, auth, vm_id, rf"CXMPUTE-VM-READY {fingerprint(key)} boot=43\b", after=mark)
    httpx.post(f"{api}/v1/vms/{vm_id}/stop", headers=auth, timeout=60).raise_for_status()

    # Restore: the guest resumes where it was snapshotted, ticking on with the disk as it was then.
    mark = len(_console(vm_platform, auth, vm_id))
    resp = httpx.post(f"{api}/v1/vms/{vm_id}/start", json={"snapshot": "ticking"}, headers=auth, timeout=60)
    assert resp.status_code == 200, resp.text
    tick = _wait_console(vm_platform, auth, vm_id, r"CXMPUTE-TICK (\d+) disk=(\d+)", after=mark)
    assert int(tick.group(1)) == snap_tick + 1 and tick.group(2) == "42"
    assert "CXMPUTE-VM-READY" not in _console(vm_platform, auth, vm_id)[mark:]
    httpx.post(f"{api}/v1/vms/{vm_id}/stop", headers=auth, timeout=60).raise_for_status()
    mark = len(_console(vm_platform, auth, vm_id))
    started = _cli(vm_platform, wallet, "start", vm_id)
    assert started.returncode == 0 and "running" in started.stdout, started.stderr
    _wait_console(vm_platform, auth, vm_id, r"boot=43\b", after=mark)  # the snapshot's disk, booted again
    shown = _cli(vm_platform, wallet, "console", vm_id)
    assert shown.returncode == 0 and f"CXMPUTE-VM-READY {fingerprint(key)}" in shown.stdout, shown.stderr
    resp = httpx.post(f"{api}/v1/vms/{vm_id}/start", json={"snapshot": "nope"}, headers=auth)
    assert resp.status_code == 409  # running

    # The CLI lists it, then destroys it: process and files gone, lease ended, unused escrow refunded.
    listed = _cli(vm_platform, wallet, "ls")
    assert listed.returncode == 0 and vm_id in listed.stdout and "ticking" in listed.stdout, listed.stderr
    pid = int((machine / "qemu.pid").read_text())
    removed = _cli(vm_platform, wallet, "rm", vm_id)
    assert removed.returncode == 0, removed.stderr
    vm = httpx.get(f"{api}/v1/vms/{vm_id}", headers=auth).json()
    assert vm["status"] == "destroyed" and vm["lease_status"] == "ended"
    assert not _alive(pid) and not machine.exists()
    lease = httpx.get(f"{api}/v1/leases/{vm['lease_id']}", headers=auth).json()
    assert lease["end_reason"] == "user-cancelled" and lease["escrow_left_gwei"] == 0
    assert lease["metered_s"] == vm["billed_s"] and lease["paid_gwei"] == vm["paid_gwei"] > 0
    balance = httpx.get(f"{api}/v1/account/balance", headers=auth).json()["user_gwei"]
    assert balance == deposit - vm["paid_gwei"]
    assert httpx.post(f"{api}/v1/vms/{vm_id}/start", headers=auth).status_code == 409
    assert httpx.get(f"{api}/v1/vms", headers=auth).json() == []
    assert [v["id"] for v in httpx.get(f"{api}/v1/vms", params={"all": True}, headers=auth).json()] == [vm_id]


def test_a_machine_stops_billed_when_its_time_is_up(vm_platform, vm_guest):
    wallet, auth = vm_platform.user()
    api = vm_platform.url
    kernel, initrd = _put(vm_platform, auth, vm_guest[0], "vmlinuz"), _put(vm_platform, auth, vm_guest[1], "initrd")
    resp = httpx.post(
        f"{api}/v1/vms",
        headers=auth,
        timeout=120,
        json={
            "kernel": kernel,
            "initrd": initrd,
            "ssh_key": _ssh_key(),
            "disk_mb": 16,
            "price_max_gwei": 50,
            "max_duration_s": 3,
        },
    )
    assert resp.status_code == 201, resp.text
    vm = resp.json()
    pid = int((vm_platform.home / "platform" / "vms" / vm["id"] / "qemu.pid").read_text())
    deadline = time.time() + 60
    while vm["status"] == "running" and time.time() < deadline:
        time.sleep(0.5)
        vm = httpx.get(f"{api}/v1/vms/{vm['id']}", headers=auth).json()
    assert vm["status"] == "stopped" and vm["lease_status"] == "ended" and "time is up" in vm["error"]
    assert not _alive(pid) and 0 < vm["billed_s"] <= 3
    lease = httpx.get(f"{api}/v1/leases/{vm['lease_id']}", headers=auth).json()
    assert lease["end_reason"] == "completed" and lease["escrow_left_gwei"] == 0
    assert lease["paid_gwei"] == vm["paid_gwei"] == vm["billed_s"] * 10 * vm["compute_units"]
    resp = httpx.post(f"{api}/v1/vms/{vm['id']}/start", headers=auth)
    assert resp.status_code == 409 and "lease has ended" in resp.json()["detail"]
    assert httpx.delete(f"{api}/v1/vms/{vm['id']}", headers=auth).json()["status"] == "destroyed"

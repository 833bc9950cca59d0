"""The vm runtime's plug-in face: offered only where QEMU is found, refusing commands, reporting why QEMU would
not start. (Booting, snapshots and billing are in tests/compute/vms.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from compute.runtimes import RuntimeRegistry, RuntimeUnavailable
from compute.runtimes.qemu import MachineConfig, MachineError
from cxmpute.settings import Settings

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0iQmfP3Wj4p0t3sXyq8m6TnY0wTfvYd5H2V4xYQ1c me@x"


def _registry(tmp_path, **fields) -> RuntimeRegistry:
    return RuntimeRegistry(Settings(home=tmp_path, **fields))


def test_vm_is_offered_only_where_qemu_is_found(tmp_path):
    present = _registry(tmp_path)
    assert present.runtime("vm").check() is None, "install qemu-system-x86 and qemu-utils (deploy/system-deps.sh)"
    assert "vm" in present.available() and "vm" not in present.offered()  # user code never goes to a vm

    missing = _registry(tmp_path, qemu_binary=str(tmp_path / "no-qemu"))
    assert "no-qemu not found" in missing.runtime("vm").check()
    assert "vm" not in missing.available() and "sandbox" in missing.available()
    with pytest.raises(RuntimeUnavailable) as refused:
        missing.get("vm")
    assert refused.value.field == "runtime" and refused.value.status_code == 503


async def test_the_vm_runtime_runs_machines_not_commands(tmp_path):
    with pytest.raises(RuntimeUnavailable) as refused:
        await _registry(tmp_path).get("vm").start()
    assert refused.value.status_code == 400 and "/v1/vms" in refused.value.message


def test_qemu_refusing_to_start_is_reported_with_its_reason(tmp_path):
    runtime = _registry(tmp_path, vm_accel="tcg").get("vm")
    machine = runtime.machine(tmp_path / "a,b")  # a comma in a path must not split a QEMU option
    machine.create_disk(16)
    with pytest.raises(MachineError) as failed:  # no kernel file in the machine's directory
        machine.launch(MachineConfig(name="m", ssh_key=KEY, kernel=True, ssh_port=1, accel="tcg"))
    assert "QEMU did not start" in failed.value.message and "kernel" in failed.value.message
    assert not machine.running()

    (tmp_path / "big.img").write_bytes(b"\0" * 2 * 2**20)
    with pytest.raises(MachineError) as too_big:
        runtime.machine(tmp_path / "n").create_disk(1, tmp_path / "big.img")
    assert too_big.value.field == "disk_mb" and too_big.value.status_code == 400


def test_a_provider_without_qemu_cannot_publish_a_vm_provision(tmp_path):
    env = {
        **os.environ,
        "CXMPUTE_HOME": str(tmp_path),
        "CXMPUTE_QEMU_BINARY": str(tmp_path / "no-qemu"),
        "CXMPUTE_WALLET_KEY": "0x" + "11" * 32,
        "CXMPUTE_API_URL": "http://127.0.0.1:9",
    }
    refused = subprocess.run(
        [sys.executable, "-m", "cxmpute.cli", "provider", "provision", "add", "--kind", "vm", "--price-gwei", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1 and "cannot run 'vm'" in refused.stderr and "no-qemu" in refused.stderr

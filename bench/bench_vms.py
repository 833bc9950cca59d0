"""Virtual machines under software emulation (TCG): boot, snapshot, restore and stop through the vm runtime.

The guest is the tests' busybox initramfs on Debian's cloud kernel; "ready" is its marker on the serial console.
The baseline boots the same guest to the same marker with a bare ``qemu-system-x86_64`` command line (a raw
disk and the key; no QMP, qcow2, network, seccomp sandbox or privilege drop). Runs: CXMPUTE_BENCH_VM_RUNS (default 3).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.results import table, write_section
from compute.runtimes.qemu import MachineConfig, QemuRuntime
from cxmpute.settings import Settings

RUNS = int(os.environ.get("CXMPUTE_BENCH_VM_RUNS", "3"))
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0iQmfP3Wj4p0t3sXyq8m6TnY0wTfvYd5H2V4xYQ1c bench@x"


def _wait(path: Path, marker: bytes, after: int = 0, timeout: float = 180) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if path.exists() and marker in path.read_bytes()[after:]:
            return time.perf_counter()
        time.sleep(0.02)
    raise TimeoutError(f"no {marker!r} in {path}")


def _baseline(root: Path) -> float:
    """The same guest to its marker with a bare command line: a raw disk and the key, nothing else."""
    log = root / "bare.log"
    log.unlink(missing_ok=True)
    (root / "bare.img").write_bytes(b"\0" * 2**20)
    (root / "key").write_text(KEY + "\n")
    start = time.perf_counter()
    proc = subprocess.Popen(
        [
            "qemu-system-x86_64",
            "-machine",
            "pc,accel=tcg",
            "-cpu",
            "max",
            "-m",
            "256",
            "-nodefaults",
            "-display",
            "none",
            "-kernel",
            str(root / "kernel"),
            "-initrd",
            str(root / "initrd"),
            "-append",
            "console=ttyS0 quiet",
            "-serial",
            f"file:{log}",
            "-drive",
            f"file={root / 'bare.img'},if=virtio,format=raw",
            "-fw_cfg",
            f"name=opt/cxmpute/ssh_key,file={root / 'key'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        return _wait(log, b"CXMPUTE-VM-READY") - start
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from fixtures.tiny_guest import build

    kernel, initrd = build()
    runtime = QemuRuntime(Settings(vm_accel="tcg", vm_stop_grace_s=0))
    if runtime.check() is not None:
        write_section("Virtual machines", f"Not run: {runtime.check()}.")
        return
    rows: dict[str, list[float]] = {"boot": [], "savevm": [], "restore": [], "stop": []}
    with tempfile.TemporaryDirectory(prefix="cxmpute-bench-vm-") as tmp:
        root = Path(tmp)
        (root / "kernel").write_bytes(kernel)
        (root / "initrd").write_bytes(initrd)
        bare = []
        for i in range(RUNS):
            bare.append(_baseline(root))
            machine = runtime.machine(root / f"m{i}")
            machine.create_disk(64)
            (machine.path / "kernel").write_bytes(kernel)
            (machine.path / "initrd").write_bytes(initrd)
            config = MachineConfig(
                name=f"bench{i}",
                ssh_key=KEY,
                kernel=True,
                initrd=True,
                cmdline="console=ttyS0 quiet",
                ssh_port=_port(),
                accel="tcg",
            )
            start = time.perf_counter()
            machine.launch(config)
            rows["boot"].append(_wait(machine.console_log, b"CXMPUTE-VM-READY") - start)
            _wait(machine.console_log, b"CXMPUTE-TICK 1 ")
            start = time.perf_counter()
            machine.savevm("s")
            rows["savevm"].append(time.perf_counter() - start)
            start = time.perf_counter()
            machine.stop(0)
            rows["stop"].append(time.perf_counter() - start)
            mark = machine.console_log.stat().st_size
            start = time.perf_counter()
            machine.launch(config, loadvm="s")
            rows["restore"].append(_wait(machine.console_log, b"CXMPUTE-TICK", after=mark) - start)
            machine.destroy()
    median = {k: statistics.median(v) for k, v in rows.items()}
    base = statistics.median(bare)
    write_section(
        "Virtual machines",
        __doc__.split("\n\n", 1)[1]
        + "\n"
        + table(
            ["step (TCG, 1 vCPU, 256 MiB)", "runs", "median s", "max s"],
            [
                ["bare qemu: start to CXMPUTE-VM-READY (baseline)", RUNS, f"{base:.2f}", f"{max(bare):.2f}"],
                [
                    "vm runtime: launch to CXMPUTE-VM-READY (key installed, disk counted)",
                    RUNS,
                    f"{median['boot']:.2f}",
                    f"{max(rows['boot']):.2f}",
                ],
                [
                    "savevm (memory and devices into the qcow2 disk)",
                    RUNS,
                    f"{median['savevm']:.2f}",
                    f"{max(rows['savevm']):.2f}",
                ],
                ["stop (QMP quit)", RUNS, f"{median['stop']:.2f}", f"{max(rows['stop']):.2f}"],
                [
                    "restore: launch with -loadvm to the next guest tick",
                    RUNS,
                    f"{median['restore']:.2f}",
                    f"{max(rows['restore']):.2f}",
                ],
            ],
        ),
    )


def _port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

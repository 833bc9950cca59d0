"""The ``vm`` runtime: whole virtual machines under QEMU, driven through QMP.

A machine is a directory: its qcow2 disk (an overlay over a base image, or blank), the optional kernel and
initramfs it boots, the user's SSH public key, the QMP socket, the serial console log and the pid file.
QEMU runs daemonized, so a machine outlives the process that started it; every operation reaches it again
through the directory. Acceleration is KVM when ``/dev/kvm`` is usable, otherwise TCG software emulation.

The SSH key reaches the guest through fw_cfg as ``opt/cxmpute/ssh_key`` (a Linux guest reads it at
``/sys/firmware/qemu_fw_cfg/by_name/opt/cxmpute/ssh_key/raw`` and installs it in
``/root/.ssh/authorized_keys``): it needs no extra disk, so every writable disk stays qcow2 and internal
snapshots (``savevm``, with the machine's memory and device state) keep working under TCG as under KVM.
The guest's one network device is QEMU's user-mode network, restricted so the guest can open no connection
at all; the host forwards one port (on ``vm_ssh_host``) to the guest's SSH port. QEMU runs under its seccomp
sandbox and as ``nobody`` once it has opened its files.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from compute.runtimes.base import Runtime, RuntimeUnavailable, Sandbox, SandboxSpec
from compute.runtimes.qmp import Qmp, QmpError
from cxmpute.settings import Settings

SSH_KEY_FW_CFG = "opt/cxmpute/ssh_key"
CONSOLE = "console.log"
DISK = "disk.qcow2"


class MachineError(RuntimeUnavailable):
    status_code = 502


class MachineConfig(BaseModel):
    """What QEMU is started with; the same every time, since a saved state only loads into the same machine."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9-]{1,64}$")
    vcpus: int = Field(1, ge=1, le=64)
    memory_mb: int = Field(256, ge=64, le=262144)
    ssh_key: str = Field(..., min_length=1, max_length=16384)
    kernel: bool = Field(False, description="Boot the directory's kernel (and initramfs), not the disk's loader")
    initrd: bool = False
    cmdline: str = Field("", max_length=2048)
    ssh_port: int = Field(..., ge=1, le=65535, description="Host port forwarded to the guest's port 22")
    accel: Literal["kvm", "tcg"] = "tcg"


def kvm_usable() -> bool:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def _opt(path: Path) -> str:
    """A path as the value of a QEMU option, where a comma would start the next key."""
    return str(path).replace(",", ",,")


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs; a daemonized QEMU that exited may linger as a zombie where no init reaps it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


class QemuRuntime(Runtime):
    name = "vm"
    description = "Whole virtual machines (QEMU, KVM when present, else software emulation); see /v1/vms"
    runs_code = False

    def __init__(self, settings: Settings):
        self.settings = settings

    def check(self) -> str | None:
        for name in (self.settings.qemu_binary, self.settings.qemu_img_binary):
            if shutil.which(name) is None:
                return f"{name} not found"
        if self.settings.vm_accel == "kvm" and not kvm_usable():
            return "KVM acceleration is required but /dev/kvm is not usable"
        return None

    def accel(self) -> Literal["kvm", "tcg"]:
        if self.settings.vm_accel == "auto":
            return "kvm" if kvm_usable() else "tcg"
        return self.settings.vm_accel

    async def start(self, spec: SandboxSpec | None = None) -> Sandbox:
        raise RuntimeUnavailable(
            "the vm runtime runs whole machines, not commands: create one with POST /v1/vms",
            field="runtime",
            status_code=400,
        )

    def _require(self) -> None:
        why = self.check()
        if why is not None:
            raise RuntimeUnavailable(f"runtime 'vm' is not available on this machine: {why}", field="runtime")

    def machine(self, path: Path, *, checked: bool = True) -> Machine:
        """The machine kept in ``path``; ``checked=False`` skips the hypervisor check (to clean one up)."""
        if checked:
            self._require()
        return Machine(self, path)


class Machine:
    def __init__(self, runtime: QemuRuntime, path: Path):
        self.runtime = runtime
        self.path = path

    @property
    def console_log(self) -> Path:
        return self.path / CONSOLE

    @property
    def qmp_socket(self) -> Path:
        return self.path / "qmp.sock"

    def _img(self, *args: str) -> str:
        proc = subprocess.run(
            [self.runtime.settings.qemu_img_binary, *args], capture_output=True, text=True, timeout=120
        )
        if proc.returncode != 0:
            raise MachineError(f"qemu-img {args[0]}: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout

    def create_disk(self, size_mb: int, base: Path | None = None) -> None:
        """A qcow2 disk of ``size_mb``, over ``base`` (raw or qcow2, read-only beneath) when given."""
        self.path.mkdir(parents=True, exist_ok=True)
        args = ["create", "-q", "-f", "qcow2"]
        if base is not None:
            with base.open("rb") as f:
                fmt = "qcow2" if f.read(4) == b"QFI\xfb" else "raw"
            if base.stat().st_size > size_mb * 2**20:
                raise MachineError(
                    f"the image is {base.stat().st_size // 2**20} MiB, larger than the disk",
                    field="disk_mb",
                    status_code=400,
                )
            args += ["-b", base.name, "-F", fmt]  # relative: the backing file sits beside the overlay
        self._img(*args, str(self.path / DISK), f"{size_mb}M")

    def pid(self) -> int | None:
        try:
            pid = int((self.path / "qemu.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def argv(self, config: MachineConfig, loadvm: str | None = None) -> list[str]:
        accel = config.accel
        p = self.path
        (p / "ssh_key").write_text(config.ssh_key.strip() + "\n")
        args = [
            self.runtime.settings.qemu_binary,
            "-name",
            f"cxmpute-{config.name}",
            "-machine",
            f"pc,accel={accel}",
            "-cpu",
            "host" if accel == "kvm" else "max",
            "-smp",
            str(config.vcpus),
            "-m",
            str(config.memory_mb),
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            # User-mode network, restricted: the guest reaches nothing (not the host, not the internet);
            # only its SSH port is forwarded, on the host's ssh address.
            "-nic",
            f"user,model=virtio-net-pci,restrict=on,"
            f"hostfwd=tcp:{self.runtime.settings.vm_ssh_host}:{config.ssh_port}-:22",
            # The emulator itself runs confined: a seccomp filter, and as nobody once its files are open
            # (denying privilege changes or spawning outright would also forbid -daemonize and -runas).
            "-sandbox",
            "on,obsolete=deny,resourcecontrol=deny",
            "-runas",
            "nobody",
            "-chardev",
            f"file,id=console,path={_opt(p / CONSOLE)},append=on",
            "-serial",
            "chardev:console",
            "-qmp",
            f"unix:{_opt(self.qmp_socket)},server=on,wait=off",
            "-drive",
            f"file={_opt(p / DISK)},if=virtio,format=qcow2,id=disk0",
            "-fw_cfg",
            f"name={SSH_KEY_FW_CFG},file={_opt(p / 'ssh_key')}",
            "-pidfile",
            str(p / "qemu.pid"),
            "-daemonize",
        ]
        if config.kernel:
            args += ["-kernel", str(p / "kernel"), "-append", config.cmdline or "console=ttyS0"]
            if config.initrd:
                args += ["-initrd", str(p / "initrd")]
        if loadvm:
            args += ["-loadvm", loadvm]
        return args

    def launch(self, config: MachineConfig, loadvm: str | None = None) -> int:
        """Start QEMU (resuming the saved state ``loadvm``); returns its pid once it runs."""
        if self.running():
            raise MachineError("the machine is already running", status_code=409)
        self.qmp_socket.unlink(missing_ok=True)
        (self.path / "qemu.pid").unlink(missing_ok=True)
        # QEMU reports a bad configuration before it daemonizes, so its exit status and stderr tell why.
        proc = subprocess.run(
            self.argv(config, loadvm), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )
        if proc.returncode != 0:
            raise MachineError(f"QEMU did not start: {proc.stderr.strip()[-2000:]}")
        pid = self.pid()
        if pid is None:
            raise MachineError("QEMU exited right after starting")
        return pid

    def monitor(self) -> Qmp:
        return Qmp(self.qmp_socket)

    def stop(self, grace_s: float | None = None) -> None:
        """Ask the guest to power off (ACPI), then end the machine if it has not within ``grace_s``."""
        grace = self.runtime.settings.vm_stop_grace_s if grace_s is None else grace_s
        pid = self.pid()
        if pid is None:
            return
        try:
            with self.monitor() as qmp:
                if grace > 0:
                    qmp.execute("system_powerdown")
                    if self._wait_gone(pid, grace):
                        return
                qmp.execute("quit")
        except QmpError:
            pass  # the monitor went away with the machine, or it is wedged: the signals below settle it
        if not self._wait_gone(pid, 10):
            self.kill()

    def kill(self) -> None:
        pid = self.pid()
        if pid is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            if self._wait_gone(pid, 5):
                return

    def _wait_gone(self, pid: int, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not _alive(pid):
                return True
            time.sleep(0.05)
        return False

    def savevm(self, tag: str) -> None:
        """Save disk, memory and device state of the running machine under ``tag`` inside its qcow2 disk."""
        with self.monitor() as qmp:
            qmp.human(f"savevm {tag}")

    def snapshot_disk(self, tag: str) -> None:
        """Snapshot the stopped machine's disk (no memory state: restoring it boots afresh)."""
        self._img("snapshot", "-c", tag, str(self.path / DISK))

    def revert_disk(self, tag: str) -> None:
        self._img("snapshot", "-a", tag, str(self.path / DISK))

    def destroy(self) -> None:
        """Kill the machine and remove its directory."""
        self.kill()
        shutil.rmtree(self.path, ignore_errors=True)

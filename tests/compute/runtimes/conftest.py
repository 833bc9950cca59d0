"""Fixtures for the runtimes: each runtime this machine offers, a host full of things a job must not touch."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from compute.runtimes import Limits, SandboxSpec, runtime_registry
from compute.runtimes.code import CodeResult, run_code
from cxmpute.settings import get_settings

RUNTIMES = ["sandbox", pytest.param("container", marks=[pytest.mark.docker, pytest.mark.slow])]


@pytest.fixture(params=RUNTIMES)
def runtime(request):
    registry = runtime_registry(get_settings())
    why = registry.runtime(request.param).check()
    if why is not None:
        if request.param == "sandbox":
            pytest.fail(f"the sandbox runtime must work on every machine that runs the tests: {why}")
        pytest.skip(f"no {request.param} runtime on this machine: {why}")
    return registry.get(request.param)


class Listener:
    """A TCP service on the host's loopback that counts who reaches it."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        self.sock = socket.socket()
        self.sock.bind((address, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


@dataclass
class Host:
    secret_file: Path
    database: Path
    canary_dir: Path
    secret: str
    sleeper: subprocess.Popen
    listener: Listener
    wide_listener: Listener
    watched: list[Path] = field(default_factory=list)

    def snapshot(self) -> dict[str, str]:
        state = {}
        for root in self.watched:
            paths = [root] if root.is_file() else sorted(p for p in root.rglob("*"))
            for p in paths:
                state[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        return state


@pytest.fixture
def host(tmp_path, monkeypatch):
    settings = get_settings()
    secret = settings.resolved_secret_key()
    secret_file = settings.data_dir / "secret.key"
    database = settings.data_dir / "escape-target.db"
    database.write_text(f"TOPSECRET-DB-{secret}")
    canary_dir = Path("/tmp") / f"cxmpute-canary-{uuid.uuid4().hex}"
    canary_dir.mkdir()
    (canary_dir / "canary.txt").write_text("untouched")
    os.chmod(canary_dir, 0o777)  # world-writable: only isolation, not permissions, protects it
    monkeypatch.setenv("CXMPUTE_SECRET_KEY", secret)
    monkeypatch.setenv("CXMPUTE_PROVIDER_PRIVATE_KEY", "0x" + "ab" * 32)
    sleeper = subprocess.Popen(["sleep", "300"])
    listener, wide_listener = Listener(), Listener("0.0.0.0")
    h = Host(
        secret_file=secret_file,
        database=database,
        canary_dir=canary_dir,
        secret=secret,
        sleeper=sleeper,
        listener=listener,
        wide_listener=wide_listener,
        watched=[secret_file, database, canary_dir],
    )
    before = h.snapshot()
    yield h
    try:
        assert h.snapshot() == before, "a job changed the host"
        assert sleeper.poll() is None, "a job killed a host process"
        assert listener.accepted == wide_listener.accepted == 0, "a job reached a service on the host"
    finally:
        sleeper.kill()
        sleeper.wait()
        listener.close()
        wide_listener.close()
        database.unlink()
        for p in sorted(canary_dir.rglob("*"), reverse=True):
            p.unlink() if p.is_file() or p.is_symlink() else p.rmdir()
        canary_dir.rmdir()


def _scratch_leftovers(runtime) -> list[str]:
    """Job scratch directories still on the host (each process keeps its jobs' under a folder of its own)."""
    if not runtime.root.exists():
        return []
    return sorted(f"{owner}/{job}" for owner in os.listdir(runtime.root) for job in os.listdir(runtime.root / owner))


async def _run_job(runtime, code: str, *, language: str = "python", network: bool = False, **limits) -> CodeResult:
    """Run one snippet in a fresh sandbox of ``runtime`` and stop it, as Codexecution does."""
    spec = SandboxSpec(
        network=network,
        limits=Limits(
            **{"wall_seconds": 10, "cpu_seconds": 10, "memory_mb": 256, "processes": 32, "disk_mb": 16, **limits}
        ),
    )
    sandbox = await runtime.start(spec)
    try:
        return await run_code(sandbox, runtime, code, language=language)
    finally:
        await sandbox.stop()


def _host_processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if marker.encode() in Path(entry.path, "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture
def run_job():
    return _run_job


@pytest.fixture
def scratch_leftovers():
    return _scratch_leftovers


@pytest.fixture
def host_processes_with():
    return _host_processes_with

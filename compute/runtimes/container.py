"""The ``container`` runtime: a Docker container per job, through the Docker SDK.

The container runs as ``nobody`` with a read-only root, no capabilities, ``no-new-privileges``, the
runtimes' seccomp policy (:mod:`compute.runtimes.seccomp`, the sandbox runtime's), network ``none``
unless granted, memory, CPU and process limits, rlimits, a private ``/tmp`` and the job's scratch
tmpfs (shared with the sandbox runtime's symlink-proof file access) bound at ``/scratch``. Commands
are ``docker exec``\\ s; the deadline of one kills the whole container.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import uuid
from collections.abc import Sequence

from docker.utils.socket import STDOUT, frames_iter

from compute.runtimes import seccomp
from compute.runtimes.base import (
    BackgroundProcess,
    ExecResult,
    OutputChunk,
    OutputFn,
    ResourceUsage,
    Runtime,
    RuntimeUnavailable,
    SandboxSpec,
)
from compute.runtimes.image import ensure_image
from compute.runtimes.network import available as network_available
from compute.runtimes.network import fence_container
from compute.runtimes.scratch import Scratch, ScratchSandbox, prepare_root
from cxmpute.settings import Settings

NOBODY = 65534
_PATH = "/usr/local/bin:/usr/bin:/bin"


class ContainerSandbox(ScratchSandbox):
    def __init__(self, runtime: ContainerRuntime, spec: SandboxSpec):
        super().__init__(spec)
        self.runtime = runtime
        self.api = runtime.client.api
        lim = spec.limits
        # The scratch tmpfs is RAM, charged to the container's memory cgroup as the job writes it; it is
        # never larger than that limit, so files the platform puts there cannot hold more either.
        self.scratch = Scratch(runtime.root, min(lim.disk_mb, lim.memory_mb), NOBODY, NOBODY)
        self._kill_lock = threading.Lock()
        self._dead = False
        self._wall = 0.0
        try:
            self.container = runtime.client.containers.run(
                runtime.image,
                command=["/usr/bin/python3", "-I", "-c", "import signal; signal.pause()"],
                detach=True,
                user=f"{NOBODY}:{NOBODY}",
                working_dir=self.workdir,
                read_only=True,
                hostname="sandbox",
                network_mode=runtime.granted_network if spec.network else "none",
                mem_limit=f"{lim.memory_mb}m",
                memswap_limit=f"{lim.memory_mb}m",
                nano_cpus=int(lim.cpus * 1e9),
                pids_limit=lim.processes,
                cap_drop=["ALL"],
                ipc_mode="private",
                security_opt=["no-new-privileges", f"seccomp={seccomp.docker_profile()}"],
                ulimits=[
                    {"Name": "cpu", "Soft": lim.cpu_seconds, "Hard": lim.cpu_seconds},
                    {"Name": "fsize", "Soft": lim.file_size_mb * 2**20, "Hard": lim.file_size_mb * 2**20},
                    {"Name": "nofile", "Soft": lim.open_files, "Hard": lim.open_files},
                    {"Name": "core", "Soft": 0, "Hard": 0},
                ],
                tmpfs={"/tmp": "size=16m,mode=1777"},
                shm_size="16m",
                environment={},
                volumes={str(self.scratch.path): {"bind": self.workdir, "mode": "rw"}},
                labels={"cxmpute.runtime": "container"},
                name=f"cxmpute-job-{uuid.uuid4().hex[:12]}",
            )
            if spec.network:
                fence_container(self.container)
        except Exception:
            self.scratch.remove_tree()
            if getattr(self, "container", None) is not None:
                self.container.remove(force=True)
            raise

    def _env(self, env: dict[str, str] | None) -> dict[str, str]:
        return {
            "PATH": _PATH,
            "HOME": self.workdir,
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            **self.spec.env,
            **(env or {}),
        }

    def kill(self) -> None:
        with self._kill_lock:
            if self._dead:
                return
            self._dead = True
        try:
            self.container.kill()
        except Exception:  # already gone
            pass

    def _check_running(self) -> None:
        if self._dead:
            raise RuntimeUnavailable("the container was stopped (a command ran past its deadline)")

    def _exec_sync(
        self,
        argv: Sequence[str],
        stdin: bytes | None,
        timeout: float,
        env: dict[str, str] | None,
        on_output: OutputFn | None,
    ) -> ExecResult:
        cap = self.spec.limits.output_bytes
        started = time.monotonic()
        exec_id = self.api.exec_create(
            self.container.id,
            list(argv),
            stdout=True,
            stderr=True,
            stdin=stdin is not None,
            user=f"{NOBODY}:{NOBODY}",
            workdir=self.workdir,
            environment=self._env(env),
        )["Id"]
        timed_out = threading.Event()

        def on_deadline() -> None:
            timed_out.set()
            self.kill()

        timer = threading.Timer(timeout, on_deadline)
        timer.daemon = True
        timer.start()
        bufs = {"stdout": bytearray(), "stderr": bytearray()}
        truncated = {"stdout": False, "stderr": False}
        try:
            if stdin is not None:
                sock = self.api.exec_start(exec_id, socket=True)
                sock._sock.sendall(stdin)
                sock._sock.shutdown(1)
                frames = ((("stdout", "stderr")[kind - 1], data) for kind, data in frames_iter(sock, tty=False))
            else:
                frames = (
                    ("stdout" if out is not None else "stderr", out if out is not None else err)
                    for out, err in self.api.exec_start(exec_id, stream=True, demux=True)
                )
            for stream, data in frames:
                room = cap - len(bufs[stream])
                if room > 0:
                    bufs[stream] += data[:room]
                    if on_output is not None:
                        on_output(OutputChunk(stream=stream, data=bytes(data[:room])))
                if len(data) > max(room, 0):
                    truncated[stream] = True
        except Exception:  # the stream breaks when the container is killed on the deadline
            if not timed_out.is_set():
                raise
        finally:
            timer.cancel()
        exit_code = None if timed_out.is_set() else self.api.exec_inspect(exec_id).get("ExitCode")
        wall = time.monotonic() - started
        self._wall += wall
        return ExecResult(
            exit_code=exit_code,
            stdout=bytes(bufs["stdout"]),
            stderr=bytes(bufs["stderr"]),
            stdout_truncated=truncated["stdout"],
            stderr_truncated=truncated["stderr"],
            timed_out=timed_out.is_set(),
            usage=ResourceUsage(wall_seconds=round(wall, 4)),
        )

    def _stats(self) -> tuple[float, float]:
        try:
            stats = self.container.stats(stream=False, one_shot=True)
        except Exception:  # a stopped container has no stats
            return 0.0, 0.0
        cpu = stats.get("cpu_stats", {}).get("cpu_usage", {}).get("total_usage", 0) / 1e9
        mem = stats.get("memory_stats", {})
        return cpu, (mem.get("max_usage") or mem.get("usage") or 0) / 2**20

    async def exec(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
        on_output: OutputFn | None = None,
    ) -> ExecResult:
        self._check_running()
        return await asyncio.to_thread(
            self._exec_sync, argv, stdin, timeout or self.spec.limits.wall_seconds, env, on_output
        )

    def start_process(self, argv: Sequence[str], *, env: dict[str, str] | None = None) -> BackgroundProcess:
        self._check_running()
        return _ExecProcess(self, argv, self._env(env))

    def usage(self) -> ResourceUsage:
        cpu, rss = self._stats()
        return ResourceUsage(wall_seconds=round(self._wall, 4), cpu_seconds=round(cpu, 4), max_rss_mb=round(rss, 2))

    def close(self) -> None:
        self._dead = True
        try:
            self.container.remove(force=True)
        except Exception:  # already removed
            pass
        self.scratch.remove_tree()


class _ExecProcess(BackgroundProcess):
    def __init__(self, sandbox: ContainerSandbox, argv: Sequence[str], env: dict[str, str]):
        self.sandbox = sandbox
        api = sandbox.api
        self.exec_id = api.exec_create(
            sandbox.container.id,
            list(argv),
            stdin=True,
            stdout=True,
            stderr=False,
            user=f"{NOBODY}:{NOBODY}",
            workdir=sandbox.workdir,
            environment=env,
        )["Id"]
        self.sock = api.exec_start(self.exec_id, socket=True)
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for stream, data in frames_iter(self.sock, tty=False):
                if stream == STDOUT:
                    self._stdout(data)
        except (OSError, ValueError):  # the socket closes with the process (ValueError once closed here)
            pass

    def send(self, data: bytes) -> None:
        with self._lock:
            try:
                self.sock._sock.sendall(data)
            except OSError:
                pass

    def alive(self) -> bool:
        if self.sandbox._dead:
            return False
        try:
            return bool(self.sandbox.api.exec_inspect(self.exec_id).get("Running"))
        except Exception:  # the container is gone
            return False

    def kill(self) -> None:
        try:
            pid = self.sandbox.api.exec_inspect(self.exec_id).get("Pid")
            if pid:
                os.kill(pid, signal.SIGKILL)
        except Exception:  # the process or the container is already gone
            pass
        try:
            self.sock.close()
        except OSError:
            pass


class ContainerRuntime(Runtime):
    name = "container"
    description = "a Docker container per job (Docker SDK), image built locally"
    python = "/usr/bin/python3"
    granted_network = "bridge"

    def __init__(self, settings: Settings):
        self.root = settings.data_dir / "runtimes" / "container"
        self._client = None
        self._image: str | None = None
        self._lock = threading.Lock()

    @property
    def client(self):
        with self._lock:
            if self._client is None:
                import docker

                self._client = docker.from_env(timeout=120)
            return self._client

    @property
    def image(self) -> str:
        with self._lock:
            client = self._client
        if self._image is None:
            self._image = ensure_image(client or self.client)
        return self._image

    def check(self) -> str | None:
        try:
            self.client.ping()
        except Exception as exc:  # no socket, no permission, engine down
            with self._lock:
                self._client = None
            return f"no Docker engine answers ({type(exc).__name__}); start dockerd or set DOCKER_HOST"
        if os.geteuid() != 0:
            return "the container runtime runs as root, to mount each job's size-capped scratch directory"
        if not seccomp.supported():
            return f"no seccomp policy for this machine's architecture ({os.uname().machine})"
        return None

    async def start(self, spec: SandboxSpec | None = None) -> ContainerSandbox:
        why = self.check()
        if why:
            raise RuntimeUnavailable(why)
        spec = spec or SandboxSpec()
        if spec.network and (why := network_available()):
            raise RuntimeUnavailable(f"this machine cannot grant container jobs network: {why}", field="network")
        prepare_root(self.root)
        await asyncio.to_thread(lambda: self.image)
        return await asyncio.to_thread(ContainerSandbox, self, spec)

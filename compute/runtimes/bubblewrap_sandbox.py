"""One job's sandbox under the ``sandbox`` runtime (:mod:`compute.runtimes.bubblewrap`), and the commands it runs.

Layout of each command: ``bwrap`` (as root, so it can build the mount tree without a user
namespace) unshares pid, ipc, uts, cgroup and (unless granted) network namespaces, shows a read-only
system (``/usr``, a short list of ``/etc`` files, the platform's Python), a private ``/proc``,
``/dev`` and ``/tmp`` and the job's scratch tmpfs at ``/scratch``; inside, ``prlimit`` sets the
rlimits and ``setpriv`` drops to a uid of its own, with no capabilities and no way to gain any.
A uid per job makes the process limit count only that job's processes and leaves it no file on the
host it owns. ``--die-with-parent`` plus the pid namespace mean that killing ``bwrap`` ends every
process of the job. Where a memory cgroup can be made (:mod:`compute.runtimes.memory`), each command
starts in the job's, so its processes and the RAM its tmpfs pages take stay within ``memory_mb``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from compute.runtimes import memory as job_memory
from compute.runtimes import seccomp
from compute.runtimes.base import (
    BackgroundProcess,
    ExecResult,
    OutputFn,
    ResourceUsage,
    RuntimeUnavailable,
    SandboxSpec,
)
from compute.runtimes.memory import MemoryCgroup
from compute.runtimes.network import GrantedNetwork
from compute.runtimes.process import run_process
from compute.runtimes.scratch import Scratch, ScratchSandbox

if TYPE_CHECKING:
    from compute.runtimes.bubblewrap import BubblewrapRuntime

UID_BASE = 1_800_000  # far above any account on the host, so a job's uid owns nothing there
UID_SPAN = 1_000_000
_ETC = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "nsswitch.conf",
    "passwd",
    "group",
    "hosts",
    "resolv.conf",
    "ssl",
    "ca-certificates",
    "alternatives",
    "localtime",
    "mime.types",
    "host.conf",
    "gai.conf",
)
_PATH = "/usr/local/bin:/usr/bin:/bin"


class BubblewrapSandbox(ScratchSandbox):
    def __init__(self, runtime: BubblewrapRuntime, spec: SandboxSpec):
        super().__init__(spec)
        self.runtime = runtime
        self.uid = UID_BASE + secrets.randbelow(UID_SPAN)
        lim = spec.limits
        # The scratch tmpfs is RAM: it counts within the job's memory. In a memory cgroup the kernel counts
        # the pages the job writes; without one the scratch is carved out of the address space limit.
        self.memory = MemoryCgroup(lim.memory_mb) if job_memory.available() else None
        scratch_mb = min(lim.disk_mb, lim.memory_mb if self.memory else lim.memory_mb // 2)
        self.address_space_mb = lim.memory_mb if self.memory else lim.memory_mb - scratch_mb
        try:
            self.scratch = Scratch(runtime.root, scratch_mb, self.uid, self.uid)
        except BaseException:
            if self.memory is not None:
                self.memory.remove()
            raise
        self._usage = ResourceUsage()
        self._lock = threading.Lock()
        self._processes: list[_BwrapProcess] = []
        self._stopped = False

    def argv(
        self,
        command: Sequence[str],
        env: dict[str, str] | None = None,
        seccomp_fd: int | None = None,
        network: GrantedNetwork | None = None,
    ) -> list[str]:
        lim = self.spec.limits
        args = self.memory.launcher() if self.memory is not None else []
        args += [
            "bwrap",
            "--die-with-parent",
            "--new-session",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname",
            "sandbox",
        ]
        if seccomp_fd is not None:
            args += ["--seccomp", str(seccomp_fd)]
        # Always a network namespace of its own: granted jobs get one connected to the internet only.
        args += network.bwrap_args() if network is not None else ["--unshare-net"]
        args += ["--ro-bind", "/usr", "/usr"]
        for link in ("bin", "lib", "lib64", "sbin"):
            target = os.readlink(f"/{link}") if os.path.islink(f"/{link}") else None
            if target:
                args += ["--symlink", target, f"/{link}"]
            elif os.path.isdir(f"/{link}"):
                args += ["--ro-bind", f"/{link}", f"/{link}"]
        for name in _ETC:
            if os.path.exists(f"/etc/{name}"):
                args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
        # The private /tmp comes before the interpreter's binds: a platform installed under /tmp
        # (a checkout there, say) must stay visible on top of it.
        args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(16 * 2**20), "--tmpfs", "/tmp"]
        made = {Path("/tmp")}
        for root in self.runtime.python_roots:
            for parent in reversed(root.parents):
                if str(parent) != "/" and parent not in made:
                    made.add(parent)
                    args += ["--perms", "0755", "--dir", str(parent)]
            args += ["--ro-bind", str(root), str(root)]
        args += [
            "--bind",
            str(self.scratch.path),
            self.workdir,
            "--chdir",
            self.workdir,
            "--cap-add",
            "CAP_SETUID",
            "--cap-add",
            "CAP_SETGID",
            "--clearenv",
        ]
        for key, value in {**self.base_env(), **self.spec.env, **(env or {})}.items():
            args += ["--setenv", key, value]
        args += [
            "--",
            "/usr/bin/prlimit",
            f"--cpu={lim.cpu_seconds}",
            f"--as={self.address_space_mb * 2**20}",
            f"--nproc={lim.processes}",
            f"--fsize={lim.file_size_mb * 2**20}",
            f"--nofile={lim.open_files}",
            "--core=0",
            "--",
            "/usr/bin/setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.uid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
            *command,
        ]
        return args

    def base_env(self) -> dict[str, str]:
        return {
            "PATH": _PATH,
            "HOME": self.workdir,
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
        }

    def _add_usage(self, usage: ResourceUsage) -> None:
        with self._lock:
            self._usage = ResourceUsage(
                wall_seconds=self._usage.wall_seconds + usage.wall_seconds,
                cpu_seconds=self._usage.cpu_seconds + usage.cpu_seconds,
                max_rss_mb=max(self._usage.max_rss_mb, usage.max_rss_mb),
            )

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
        fd = seccomp.program_fd()
        network = GrantedNetwork() if self.spec.network else None
        try:
            # bwrap itself gets no environment beyond PATH: the job's environment is set with --setenv only
            result = await asyncio.to_thread(
                run_process,
                self.argv(argv, env, fd, network),
                env={"PATH": _PATH},
                stdin=stdin,
                timeout=timeout or self.spec.limits.wall_seconds,
                output_cap=self.spec.limits.output_bytes,
                on_output=on_output,
                pass_fds=(fd, *(network.pass_fds if network else ())),
                on_spawn=network.attach if network else None,
            )
        finally:
            os.close(fd)
            if network is not None:
                network.close()
        self._add_usage(result.usage)
        if not any(p.alive() for p in self._processes):  # a session kernel shares the uid; spare it
            await asyncio.to_thread(self.runtime.reap_uid, self.uid)
        return result

    def start_process(self, argv: Sequence[str], *, env: dict[str, str] | None = None) -> BackgroundProcess:
        self._check_running()
        fd = seccomp.program_fd()
        network = GrantedNetwork() if self.spec.network else None
        try:
            proc = _BwrapProcess(
                self, self.argv(argv, env, fd, network), (fd, *(network.pass_fds if network else ())), network
            )
        finally:
            os.close(fd)
        self._processes.append(proc)
        return proc

    def usage(self) -> ResourceUsage:
        with self._lock:
            return self._usage

    def _check_running(self) -> None:
        if self._stopped:
            raise RuntimeUnavailable("the sandbox was stopped")

    def close(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        for proc in self._processes:
            proc.kill()
        for proc in self._processes:
            proc.wait(5)
        self.runtime.reap_uid(self.uid)
        self.scratch.remove_tree()
        if self.memory is not None:
            self.memory.remove()


# --die-with-parent ends a sandbox when the *thread* that started it exits, so a session's kernel is
# started from this thread, which lives as long as the process (request threads come and go).
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxmpute-sandbox-spawner")


class _BwrapProcess(BackgroundProcess):
    def __init__(
        self, sandbox: BubblewrapSandbox, argv: list[str], pass_fds: tuple[int, ...], network: GrantedNetwork | None
    ):
        self.sandbox = sandbox
        self.network = network
        self.started = time.monotonic()
        self.proc = _spawner.submit(
            subprocess.Popen,
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={"PATH": _PATH},
            start_new_session=True,
            pass_fds=pass_fds,
        ).result()
        self._done = threading.Event()
        threading.Thread(target=self._wait, daemon=True).start()
        threading.Thread(target=self._read, daemon=True).start()
        if network is not None:
            try:
                network.attach()
            except BaseException:
                self.kill()
                self._done.wait(5)
                network.close()
                raise

    def _wait(self) -> None:
        _, status, rusage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        if self.network is not None:
            self.network.close()
        self.sandbox._add_usage(
            ResourceUsage(
                wall_seconds=round(time.monotonic() - self.started, 4),
                cpu_seconds=round(rusage.ru_utime + rusage.ru_stime, 4),
                max_rss_mb=round(rusage.ru_maxrss / 1024, 2),
            )
        )
        self._done.set()

    def _read(self) -> None:
        while chunk := self.proc.stdout.read1(4096):
            self._stdout(chunk)
        self.proc.stdout.close()

    def send(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass

    def alive(self) -> bool:
        return not self._done.is_set()

    def kill(self) -> None:
        if not self._done.is_set():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float) -> None:
        self._done.wait(timeout)

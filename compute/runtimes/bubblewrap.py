"""The ``sandbox`` runtime: bubblewrap namespaces, a per-job uid, rlimits and a wall-clock deadline.

Each job runs in a sandbox of its own (:mod:`compute.runtimes.bubblewrap_sandbox`, where the layout of its
commands is described). The runtime checks that this machine can build one (bwrap, root, a seccomp filter, the
util-linux tools and the capabilities bwrap needs), starts them, and reaps whatever still runs as a job's uid.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from compute.runtimes import network as job_network
from compute.runtimes import seccomp
from compute.runtimes.base import Runtime, RuntimeUnavailable, SandboxSpec
from compute.runtimes.bubblewrap_sandbox import BubblewrapSandbox
from compute.runtimes.scratch import prepare_root
from cxmpute.settings import Settings


def _python_roots() -> list[Path]:
    """The platform's interpreter and its environment, shown read-only inside the sandbox."""
    roots = []
    for p in {Path(sys.base_prefix).resolve(), Path(sys.prefix)}:
        if not p.is_relative_to("/usr"):
            roots.append(p)
    return sorted(roots)


# Mounting each job's /proc and scratch tmpfs, and bringing up the loopback of its network namespace. Container
# engines drop CAP_NET_ADMIN by default; the jobs themselves keep neither.
_SANDBOX_CAPS = {"CAP_SYS_ADMIN": 21, "CAP_NET_ADMIN": 12}


def _effective_caps() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1], 16) for line in status if line.startswith("CapEff:"))


class BubblewrapRuntime(Runtime):
    name = "sandbox"
    description = "bubblewrap namespaces with rlimits; the platform's own Python"

    def __init__(self, settings: Settings):
        self.root = settings.data_dir / "runtimes" / "sandbox"
        self.python_roots = _python_roots()
        self.python = sys.executable

    def check(self) -> str | None:
        if shutil.which("bwrap") is None:
            return "bubblewrap is not installed (Debian package 'bubblewrap')"
        if os.geteuid() != 0:
            return "the sandbox runtime runs as root, to give each job a uid of its own"
        if not seccomp.supported():
            return f"no seccomp filter for this machine's architecture ({os.uname().machine})"
        for tool in ("/usr/bin/prlimit", "/usr/bin/setpriv"):
            if not os.path.exists(tool):
                return f"{tool} is missing (Debian package 'util-linux')"
        if missing := [name for name, bit in _SANDBOX_CAPS.items() if not _effective_caps() >> bit & 1]:
            # Without them bwrap fails on every job, CAP_NET_ADMIN with a misleading errno at its loopback.
            return (
                f"the sandbox needs {' and '.join(missing)}, which this process lacks "
                "(a container gets them with cap_add)"
            )
        return None

    async def start(self, spec: SandboxSpec | None = None) -> BubblewrapSandbox:
        why = self.check()
        if why:
            raise RuntimeUnavailable(why)
        spec = spec or SandboxSpec()
        if spec.network and (why := job_network.available()):
            raise RuntimeUnavailable(f"this machine cannot grant sandbox jobs network: {why}", field="network")
        prepare_root(self.root)
        return await asyncio.to_thread(BubblewrapSandbox, self, spec)

    @staticmethod
    def reap_uid(uid: int, wait: float = 5.0) -> None:
        """Kill whatever still runs as the job's uid and wait until it is gone. The pid namespace dies
        with bwrap, but asynchronously; this makes "the job is over" mean no process of it is left."""
        deadline = time.monotonic() + wait
        while True:
            alive = []
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    if os.stat(entry.path).st_uid != uid:
                        continue
                    state = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[0]
                except (FileNotFoundError, ProcessLookupError, IndexError, OSError):
                    continue
                if state not in ("Z", "X"):  # a zombie has already ended; its parent reaps it
                    alive.append(int(entry.name))
            if not alive or time.monotonic() > deadline:
                return
            for pid in alive:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.005)

"""A memory cgroup per sandbox job, so that all the job keeps in RAM counts against its ``memory_mb``.

Rlimits bound each process alone and only its address space; the pages a job writes to its scratch
and ``/tmp`` tmpfs, to memfds or to shared memory are in no address space at all. The kernel charges
such a page to the memory cgroup of the process that first writes it, so with the job's processes in
a cgroup of its own, its processes together and every page they put in RAM stay within the limit.

Job cgroups are made under the provider's own memory cgroup (cgroup v1's memory hierarchy, or cgroup v2
where the provider's cgroup delegates the memory controller). Where neither can be written (a
container with a read-only cgroupfs), :func:`available` is False and the sandbox carves its scratch
out of the job's memory instead.
"""

from __future__ import annotations

import errno
import os
import re
import time
import uuid
from functools import cache
from pathlib import Path

from compute.runtimes.scratch import process_tag

_PREFIX = "cxmpute-job-"


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(root, mount point, filesystem type, super options) of each cgroup mount."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, rest = line.partition(" - ")
        fields, rest = fields.split(), rest.split()
        if len(rest) >= 3 and rest[0] in ("cgroup", "cgroup2"):
            found.append((fields[3], fields[4], rest[0], set(rest[2].split(","))))
    return found


def _own(controller: str) -> str | None:
    """This process's cgroup path in the hierarchy of ``controller`` ('' for cgroup v2)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return None


def _under(mount_root: str, mount_point: str, path: str) -> Path:
    return Path(mount_point) / os.path.relpath(path, mount_root)


def _writable(folder: Path) -> bool:
    probe = folder / f"{_PREFIX}probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.mkdir()
    except OSError:
        return False
    probe.rmdir()
    return True


@cache
def _parent() -> tuple[Path, int] | None:
    """Where job cgroups go, and the cgroup version; None where this process may make none. The first
    call also reclaims what dead processes left there."""
    found = _find()
    if found is not None:
        _reclaim(found[0])
    return found


def _find() -> tuple[Path, int] | None:
    mounts = _mounts()
    own = _own("memory")
    for root, point, kind, options in mounts:
        if kind == "cgroup" and "memory" in options and own is not None:
            folder = _under(root, point, own)
            if _writable(folder):
                return folder, 1
    own = _own("")
    for root, point, kind, _ in mounts:
        if kind == "cgroup2" and own is not None:
            folder = _under(root, point, own)
            try:
                if "memory" not in (folder / "cgroup.subtree_control").read_text().split():
                    (folder / "cgroup.subtree_control").write_text("+memory")
            except OSError:  # not delegated here, or this cgroup holds processes itself
                continue
            if _writable(folder):
                return folder, 2
    return None


def available() -> bool:
    return _parent() is not None


def _reclaim(parent: Path) -> None:
    """Remove the job cgroups of processes that died without removing theirs (SIGKILL, power loss, a job
    process that outlived its job); a live neighbour's are never touched, and one a process still runs in
    cannot be removed."""
    for entry in os.scandir(parent):
        match = re.fullmatch(rf"{_PREFIX}((\d+)-\d+)-[0-9a-f]+", entry.name)
        if match and process_tag(int(match[2])) != match[1]:
            try:
                os.rmdir(entry.path)
            except OSError:  # a process still runs in it
                pass


class MemoryCgroup:
    """One job's cgroup, limited to ``limit_mb`` of RAM and no swap."""

    def __init__(self, limit_mb: int):
        found = _parent()
        if found is None:
            raise RuntimeError("no memory cgroup can be made here")
        parent, self.version = found
        self.path = parent / f"{_PREFIX}{process_tag(os.getpid())}-{uuid.uuid4().hex[:12]}"
        self.path.mkdir()
        limit = str(limit_mb * 2**20)
        try:
            if self.version == 1:
                (self.path / "memory.limit_in_bytes").write_text(limit)
                if (self.path / "memory.memsw.limit_in_bytes").exists():
                    (self.path / "memory.memsw.limit_in_bytes").write_text(limit)
            else:
                (self.path / "memory.max").write_text(limit)
                if (self.path / "memory.swap.max").exists():
                    (self.path / "memory.swap.max").write_text("0")
        except BaseException:
            self.path.rmdir()
            raise

    @property
    def procs(self) -> Path:
        """Writing a pid here moves that process (and what it starts afterwards) into the cgroup."""
        return self.path / "cgroup.procs"

    def launcher(self) -> list[str]:
        """An argv prefix that joins the cgroup, then runs the rest of the argv: nothing of the job can
        start outside it, as it could if the process were moved after its start."""
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.procs)]

    def remove(self, wait: float = 5.0) -> None:
        """Once no process of the job is left; pages still charged move to the parent. A killed job's
        processes leave the cgroup only once their parents have reaped them, so it waits a little."""
        deadline = time.monotonic() + wait
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                # Past the deadline a process outlived the job: the next start of a provider reclaims it.
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    return
            time.sleep(0.01)

"""The host side of a sandbox's scratch directory: a size-capped tmpfs and symlink-proof file access.

Untrusted code owns the directory's contents, so every host access walks it one component at a time
with ``O_NOFOLLOW``: a symlink planted by the job can never make the (privileged) host read or write
outside it. A tmpfs of the job's disk size caps disk fill and, being its own filesystem, rules out
hard links to host files.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import stat
import uuid
from pathlib import Path

from compute.errors import ComputeError
from compute.runtimes.base import FileInfo, Sandbox

_libc = ctypes.CDLL(None, use_errno=True)
_MNT_DETACH = 2
_prepared: set[Path] = set()


class BadPath(ComputeError):
    status_code = 400

    def __init__(self, message: str):
        super().__init__(message, field="path")


def _parts(path: str) -> list[str]:
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts) or path.startswith("/"):
        raise BadPath(f"path {path!r} must be relative to the scratch directory, without '..'")
    return parts


def _mount_tmpfs(target: Path, size_mb: int, uid: int, gid: int) -> None:
    options = f"size={size_mb}m,mode=0700,uid={uid},gid={gid}".encode()
    flags = 0x2 | 0x4  # MS_NOSUID | MS_NODEV
    if _libc.mount(b"tmpfs", str(target).encode(), b"tmpfs", flags, options) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mounting the scratch tmpfs on {target}: {os.strerror(err)}")


def process_tag(pid: int) -> str | None:
    """``pid-starttime``: names one process for good, since pids are reused but start times are not."""
    try:
        return f"{pid}-{Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[19]}"
    except (OSError, IndexError):
        return None


def prepare_root(root: Path) -> None:
    """Create a runtime's scratch root, and, once per process, reclaim the scratch of processes that
    died without removing theirs (SIGKILL, power loss): their tmpfs mounts would otherwise stay on the
    host for good. Each process keeps its scratch under its own tag, so a live neighbour's is never touched."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    if root in _prepared:
        return
    _prepared.add(root)
    for owner in os.scandir(root):
        match = re.fullmatch(r"(\d+)-\d+", owner.name)
        if not match or process_tag(int(match[1])) == owner.name:
            continue
        for job in os.scandir(owner.path):
            _libc.umount2(job.path.encode(), _MNT_DETACH)
        shutil.rmtree(owner.path, ignore_errors=True)


class Scratch:
    """A job's private writable directory on the host, owned by the job's uid."""

    def __init__(self, root: Path, size_mb: int, uid: int, gid: int):
        self.path = root / (process_tag(os.getpid()) or "unknown") / uuid.uuid4().hex
        self.path.mkdir(parents=True, mode=0o700)
        self.uid, self.gid = uid, gid
        self._mounted = False
        if os.geteuid() == 0:
            _mount_tmpfs(self.path, size_mb, uid, gid)
            self._mounted = True
        else:
            os.chmod(self.path, 0o700)

    def _open_dir(self, parts: list[str], create: bool) -> int:
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            for part in parts:
                if create:
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                        os.chown(part, self.uid, self.gid, dir_fd=fd, follow_symlinks=False)
                    except FileExistsError:
                        pass
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = nxt
            return fd
        except BaseException:
            os.close(fd)
            raise

    def put(self, path: str, data: bytes) -> None:
        *dirs, name = _parts(path)
        try:
            dfd = self._open_dir(dirs, create=True)
        except OSError as exc:
            raise BadPath(f"cannot create the folders of {path!r}: {exc.strerror}") from None
        try:
            try:
                os.unlink(name, dir_fd=dfd)
            except FileNotFoundError:
                pass
            except IsADirectoryError:
                raise BadPath(f"{path!r} is a directory") from None
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dfd)
            try:
                os.fchown(fd, self.uid, self.gid)
                with os.fdopen(fd, "wb", closefd=False) as fh:
                    fh.write(data)
            finally:
                os.close(fd)
        except OSError as exc:
            if exc.errno == 28:  # ENOSPC
                raise BadPath(f"{path!r} does not fit in the sandbox's disk quota") from None
            raise
        finally:
            os.close(dfd)

    def get(self, path: str, max_bytes: int | None = None) -> bytes:
        *dirs, name = _parts(path)
        try:
            dfd = self._open_dir(dirs, create=False)
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            raise BadPath(f"no regular file {path!r} in the sandbox ({exc.strerror})") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise BadPath(f"{path!r} is not a regular file")
            with os.fdopen(fd, "rb", closefd=False) as fh:
                return fh.read(-1 if max_bytes is None else max_bytes)
        finally:
            os.close(fd)

    def remove(self, path: str) -> None:
        *dirs, name = _parts(path)
        try:
            dfd = self._open_dir(dirs, create=False)
        except OSError:
            return
        try:
            os.unlink(name, dir_fd=dfd)
        except (FileNotFoundError, IsADirectoryError):
            pass
        finally:
            os.close(dfd)

    def list(self, limit: int = 10_000) -> list[FileInfo]:
        """Regular files only; symlinks, devices and FIFOs the job made are ignored. ``fwalk`` walks by
        directory descriptor, so a folder swapped for a symlink while a job still runs is not followed."""
        found: list[FileInfo] = []
        for top, dirs, files, dfd in os.fwalk(self.path, follow_symlinks=False):
            dirs.sort()
            for name in sorted(files):
                try:
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found.append(FileInfo(path=os.path.relpath(os.path.join(top, name), self.path), size=st.st_size))
                    if len(found) >= limit:
                        return found
        return found

    def remove_tree(self) -> None:
        if self._mounted:
            _libc.umount2(str(self.path).encode(), _MNT_DETACH)
            self._mounted = False
        shutil.rmtree(self.path, ignore_errors=True)


class ScratchSandbox(Sandbox):
    """A sandbox whose files live in a host-side :class:`Scratch` directory (every runtime here)."""

    scratch: Scratch

    def put_file(self, path: str, data: bytes) -> None:
        self.scratch.put(path, data)

    def get_file(self, path: str, max_bytes: int | None = None) -> bytes:
        return self.scratch.get(path, max_bytes)

    def list_files(self) -> list[FileInfo]:
        return self.scratch.list()

    def remove_file(self, path: str) -> None:
        self.scratch.remove(path)

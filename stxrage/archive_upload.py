"""A folder as one upload: a tar stream built on the client, unpacked on the platform for ``put_dir``.

``POST /v1/storage/files?archive=true`` takes the tar; the platform stores the unpacked folder as one
directory archive (one CID). The tar comes from anyone, so :func:`unpack` trusts nothing in it: regular files
and folders only, at relative paths that stay inside the folder, each once. Links, devices and fifos are
refused, never skipped, so what is stored is what was sent; member count and unpacked size are capped, since
a small tar (sparse members, a flood of empty files) could otherwise fill a disk or an inode table.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from stxrage.errors import StorageError

if TYPE_CHECKING:
    from cxmpute.client import PlatformClient

FILES = "/v1/storage/files"
MAX_MEMBERS = 100_000
READ_SIZE = 1 << 20
_BLOCK = tarfile.BLOCKSIZE
# After its last byte arrives the platform still unpacks and chunks the folder before it answers: minutes
# for a big model, during which the connection is silent.
STORE_TIMEOUT = 3600.0


def folder_files(folder: Path) -> list[Path]:
    """The files a directory archive of ``folder`` holds: regular files, symlinks left out (as put_dir)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


class FolderTar:
    """A folder as a tar request body, streamed as it is read (never whole in memory). tarfile's own writer
    pushes into a file object, which a generator cannot hand on block by block without a thread and a pipe,
    so the members are framed here with tarfile's headers. Iterable again from the start, so the client's
    one resend after a lapsed session sends the whole tar and the bar counts it once."""

    def __init__(self, folder: Path, files: list[Path], advance: Callable[[int], None]):
        self.folder, self.files, self.advance, self.sent = folder, files, advance, 0

    def __iter__(self) -> Iterator[bytes]:
        self.advance(-self.sent)
        self.sent = 0
        for path in self.files:
            with path.open("rb") as f:
                stat = path.stat()
                info = tarfile.TarInfo(path.relative_to(self.folder).as_posix())
                info.size, info.mtime, info.mode = stat.st_size, int(stat.st_mtime), 0o644
                yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
                left = info.size
                while left and (block := f.read(min(READ_SIZE, left))):
                    left -= len(block)
                    self.sent += len(block)
                    self.advance(len(block))
                    yield block
                if left or f.read(1):  # the header already promised the size it had when the file was opened
                    raise StorageError(f"{path} changed while it was being sent: send it again")
            yield bytes(-info.size % _BLOCK)
        yield bytes(2 * _BLOCK)


def upload_folder(
    platform: PlatformClient, folder: Path, files: list[Path], params: dict[str, Any], advance: Callable[[int], None]
) -> dict:
    """POST ``folder`` as one tar; the platform's answer (``PutStats``: one directory archive)."""
    import httpx

    from cxmpute.client import DEFAULT_TIMEOUT

    return platform.post(
        FILES,
        params={**params, "archive": True},
        content=FolderTar(folder, files, advance),
        timeout=httpx.Timeout(DEFAULT_TIMEOUT, connect=5.0, read=STORE_TIMEOUT),
    )


def _refused(message: str) -> StorageError:
    return StorageError(message, field="body", status_code=422)


def _relative(member: tarfile.TarInfo) -> str:
    """The member's path inside the folder ('' for the folder itself); one that is not a plain relative path
    of writable names is refused."""
    name = member.name
    pure = PurePosixPath(name)
    if (
        len(name) > 1000
        or pure.is_absolute()
        or ".." in pure.parts
        or "\\" in name
        or any(ord(c) < 32 or ord(c) == 127 for c in name)
    ):
        raise _refused(
            f"{name[:200]!r}: a member's path is relative, in / form, at most 1000 characters, and "
            "stays inside the folder"
        )
    try:
        too_long = any(len(part.encode()) > 255 for part in pure.parts)
    except UnicodeEncodeError:  # bytes that are not UTF-8, kept by tarfile as lone surrogates
        raise _refused(f"{name!r}: a member's path is UTF-8") from None
    if too_long:
        raise _refused(f"{name!r}: at most 255 bytes a path part")
    return pure.as_posix() if pure.parts else ""


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "a symbolic link"
    if member.islnk():
        return "a hard link"
    if member.isdev():
        return "a device or fifo"
    return f"an entry of type {member.type!r}"


def unpack(tar_path: Path, root: Path, *, max_bytes: int) -> int:
    """Unpack the plain (uncompressed) tar at ``tar_path`` into the empty folder ``root``; the number of files.

    Everything is checked before anything is stored: an unacceptable tar raises a 422 naming ``body``, and
    what it left in ``root`` is the caller's to remove with it."""
    files: set[str] = set()
    folders: set[str] = set()
    total = 0
    try:
        with tarfile.open(tar_path, "r:") as tar:
            # Iterated, not listed: headers are read one at a time, so the member cap stops a flood early.
            for count, member in enumerate(tar, 1):
                if count > MAX_MEMBERS:
                    raise _refused(f"the tar holds more than {MAX_MEMBERS} members")
                if not (member.isreg() or member.isdir()):
                    raise _refused(
                        f"{member.name!r} is {_kind(member)}: a folder's tar holds regular files and folders only"
                    )
                path = _relative(member)
                parents = {p.as_posix() for p in PurePosixPath(path).parents} - {"."}
                if member.isdir():
                    if path in files:
                        raise _refused(f"{path!r} is both a file and a folder")
                    folders |= parents | ({path} if path else set())
                    continue  # made as its files need it: an empty folder holds nothing to store
                if not path:
                    raise _refused("a file member has no name")
                if path in files:
                    raise _refused(f"{path!r} is in the tar twice")
                if path in folders or parents & files:
                    raise _refused(f"{path!r} is both a file and a folder")
                files.add(path)
                folders |= parents
                total += member.size
                if total > max_bytes:
                    raise _refused(f"the tar's files hold more than this upload's limit of {max_bytes} bytes")
                tar.extract(member, root, set_attrs=False, filter="data")
    except tarfile.TarError as exc:
        raise _refused(f"the body is not a readable tar: {exc}") from None
    if not files:
        raise _refused("the tar holds no files")
    return len(files)

"""The model archive: model directories stored in Stxrage under a name, per account.

This is the platform's side, behind ``/v1/models/archive``: every function acts for an owner the API has
authenticated. A name points at the CID of a directory archive (one content-addressed manifest of the
folder's files, identical files and chunks stored once). Clients push and pull through the API: the files
go up and come back through ``/v1/storage``, and the archive only names what is stored.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, Field
from sqlalchemy import select

from compute.errors import ComputeError, NotFound
from compute.inference.models import ArchivedModel
from compute.models import utcnow
from cxmpute.db import migrate, session_scope
from cxmpute.errors import CxmputeError
from cxmpute.settings import Settings
from stxrage import open_storage

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
MAX_FILES = 10_000
Progress = Callable[[int], None]


class ArchivedOut(BaseModel):
    name: str
    owner: str
    cid: str = Field(description="CID of the directory archive")
    size: int = Field(description="Bytes in all files")
    files: int
    pushed_at: datetime


def _out(row: ArchivedModel) -> ArchivedOut:
    return ArchivedOut(name=row.name, owner=row.owner, cid=row.cid, size=row.size, files=row.files,
                       pushed_at=row.pushed_at)


def _db(settings: Settings) -> str:
    url = settings.resolved_database_url
    migrate(url)
    return url


def check_name(name: str) -> None:
    if not NAME.match(name) or ".." in name:
        raise ComputeError("names are letters, digits and . _ / - (up to 200), starting with a letter or digit",
                           field="name", status_code=422)


def _record(settings: Settings, owner: str, name: str, cid: str, size: int, files: int) -> ArchivedOut:
    """Point ``name`` at ``cid`` (a later push or naming of the same name replaces it)."""
    with session_scope(_db(settings)) as session:
        row = session.get(ArchivedModel, (owner, name)) or ArchivedModel(owner=owner, name=name)
        row.cid, row.size, row.files, row.pushed_at = cid, size, files, utcnow()
        session.add(row)
        session.flush()
        return _out(row)


def push(settings: Settings, directory: Path, name: str, owner: str,
         progress: Progress | None = None) -> ArchivedOut:
    """Store ``directory`` (a folder on the platform's machine) as ``owner``'s and name it."""
    check_name(name)
    directory = Path(directory)
    if not directory.is_dir():
        raise ComputeError(f"{directory} is not a directory", field="directory", status_code=422)
    files = [p for p in directory.rglob("*") if p.is_file() and not p.is_symlink()]
    if not files:
        raise ComputeError(f"{directory} holds no files", field="directory", status_code=422)
    stats = open_storage(settings).put_dir(directory, name=name, owner=owner, progress=progress)
    return _record(settings, owner, name, stats.file.cid, stats.file.size, len(files))


def name_cid(settings: Settings, name: str, cid: str, owner: str) -> ArchivedOut:
    """Name a directory archive already stored that ``owner`` may read (its own, or a public one); it is
    pinned under ``owner``, so garbage collection never takes a named model."""
    check_name(name)
    storage = open_storage(settings)
    manifest = storage.manifest(cid, owner)  # 404 naming cid unless the owner may read it
    if manifest.kind != "dir":
        raise ComputeError(f"{cid} is a file, not a directory archive", field="cid", status_code=422)
    if not manifest.files:
        raise ComputeError(f"directory archive {cid} holds no files", field="cid", status_code=422)
    storage.pin(cid, owner)
    return _record(settings, owner, name, cid, manifest.size, len(manifest.files))


def push_files(settings: Settings, name: str, files: Sequence[tuple[str, str]], owner: str) -> ArchivedOut:
    """Gather stored files (``(path, cid)``, each readable by ``owner``) into one directory archive named
    ``name``. The archive chunks each file as its upload did, so its blocks are the ones already stored."""
    check_name(name)
    if not files:
        raise ComputeError("give at least one file", field="files", status_code=422)
    if len(files) > MAX_FILES:
        raise ComputeError(f"at most {MAX_FILES} files", field="files", status_code=422)
    paths = [path for path, _ in files]
    _check_paths(paths)
    storage = open_storage(settings)
    for i, (_, cid) in enumerate(files):
        try:
            info = storage.stat(cid, owner)
        except CxmputeError as exc:
            exc.field = f"files.{i}.cid"
            raise
        if info.kind != "file":
            raise ComputeError(f"{cid} is a directory archive, not a file", field=f"files.{i}.cid",
                               status_code=422)
    # Beside the platform's storage rather than in /tmp: a model can be larger than a tmpfs.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".archive-", dir=settings.data_dir) as tmp:
        root = Path(tmp)
        for path, cid in files:
            storage.get_file(cid, root.joinpath(*PurePosixPath(path).parts), owner)
        return push(settings, root, name, owner)


def _check_paths(paths: list[str]) -> None:
    """Relative paths that stay inside the folder, each once, none also a folder of another."""
    seen: set[str] = set()
    for i, path in enumerate(paths):
        pure = PurePosixPath(path)
        if (not pure.parts or len(path) > 1000 or pure.as_posix() != path or pure.is_absolute() or "\\" in path
                or ".." in pure.parts):
            raise ComputeError(f"{path!r}: a path is relative, in / form, and stays inside the folder",
                               field=f"files.{i}.path", status_code=422)
        if _unwritable(pure):
            raise ComputeError(f"{path!r}: no control characters, and at most 255 bytes a part",
                               field=f"files.{i}.path", status_code=422)
        if path in seen:
            raise ComputeError(f"{path!r} is given twice", field=f"files.{i}.path", status_code=422)
        seen.add(path)
    folders = {parent.as_posix() for p in paths for parent in PurePosixPath(p).parents}
    for i, path in enumerate(paths):
        if path in folders:
            raise ComputeError(f"{path!r} is both a file and a folder", field=f"files.{i}.path", status_code=422)


def _unwritable(path: PurePosixPath) -> bool:
    """What a file system refuses (a server error then, named here instead as the caller's)."""
    try:
        parts = [part.encode() for part in path.parts]
    except UnicodeEncodeError:  # a lone surrogate, which JSON can carry
        return True
    return any(ord(c) < 32 for c in str(path)) or any(len(part) > 255 for part in parts)


def get(settings: Settings, name: str, owner: str) -> ArchivedOut:
    with session_scope(_db(settings)) as session:
        row = session.get(ArchivedModel, (owner, name))
        if row is None:
            raise NotFound(f"no model named {name!r} in the archive", field="name")
        return _out(row)


def ls(settings: Settings, owner: str, *, limit: int | None = None, offset: int = 0) -> list[ArchivedOut]:
    with session_scope(_db(settings)) as session:
        query = (select(ArchivedModel).where(ArchivedModel.owner == owner).order_by(ArchivedModel.name)
                 .offset(offset).limit(limit))
        return [_out(r) for r in session.scalars(query).all()]


def remove(settings: Settings, name: str, owner: str) -> ArchivedOut:
    """Drop the name; the directory archive stays stored (the owner's file, until `storage rm`)."""
    with session_scope(_db(settings)) as session:
        row = session.get(ArchivedModel, (owner, name))
        if row is None:
            raise NotFound(f"no model named {name!r} in the archive", field="name")
        out = _out(row)
        session.delete(row)
        return out

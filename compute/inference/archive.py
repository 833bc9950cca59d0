"""The model archive: model directories stored in Stxrage under a name, pulled back byte for byte.

A push stores the directory as one content-addressed archive (identical files and chunks are stored once)
and points the name at its CID; a pull writes every file back, each chunk verified against its hash on
the way, into a folder that loads with ``from_pretrained(folder)``. Inference servers take
``archive:NAME`` wherever they take a model path.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field
from sqlalchemy import select

from compute.errors import ComputeError, Conflict, NotFound
from compute.inference.models import ArchivedModel
from compute.models import utcnow
from cxmpute.db import migrate, session_scope
from cxmpute.settings import Settings
from stxrage import open_storage

PREFIX = "archive:"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
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


def _check_name(name: str) -> None:
    if not NAME.match(name) or ".." in name:
        raise ComputeError("names are letters, digits and . _ / - (up to 200), starting with a letter or digit",
                           field="name", status_code=422)


def push(settings: Settings, directory: Path, name: str, owner: str = "local",
         progress: Progress | None = None) -> ArchivedOut:
    """Store ``directory`` and point ``name`` at it (a later push of the same name replaces it)."""
    _check_name(name)
    directory = Path(directory)
    if not directory.is_dir():
        raise ComputeError(f"{directory} is not a directory", field="directory", status_code=422)
    files = [p for p in directory.rglob("*") if p.is_file() and not p.is_symlink()]
    if not files:
        raise ComputeError(f"{directory} holds no files", field="directory", status_code=422)
    stats = open_storage(settings).put_dir(directory, name=name, owner=owner, progress=progress)
    with session_scope(_db(settings)) as session:
        row = session.get(ArchivedModel, (owner, name)) or ArchivedModel(owner=owner, name=name)
        row.cid, row.size, row.files, row.pushed_at = stats.file.cid, stats.file.size, len(files), utcnow()
        session.add(row)
        session.flush()
        return _out(row)


def get(settings: Settings, name: str, owner: str = "local") -> ArchivedOut:
    with session_scope(_db(settings)) as session:
        row = session.get(ArchivedModel, (owner, name))
        if row is None:
            raise NotFound(f"no model named {name!r} in the archive", field="name")
        return _out(row)


def ls(settings: Settings, owner: str = "local") -> list[ArchivedOut]:
    with session_scope(_db(settings)) as session:
        rows = session.scalars(select(ArchivedModel).where(ArchivedModel.owner == owner)
                               .order_by(ArchivedModel.name)).all()
        return [_out(r) for r in rows]


def pull(settings: Settings, name: str, dest: Path, owner: str = "local", progress: Progress | None = None) -> Path:
    """Write the model's files into ``dest`` (which must not exist, or be empty), verified chunk by chunk."""
    entry = get(settings, name, owner)
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise Conflict(f"{dest} already exists and is not an empty directory", field="dest")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # written beside dest and renamed into place, so an interrupted pull never leaves half a model there
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        open_storage(settings).get_dir(entry.cid, staging, owner, progress=progress)
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def resolve(settings: Settings, source: str, owner: str = "local") -> str:
    """``archive:NAME`` as a local folder (pulled once per CID into the data dir); other sources unchanged."""
    if not source.startswith(PREFIX):
        return source
    entry = get(settings, source[len(PREFIX):], owner)
    folder = settings.data_dir / "models" / entry.cid
    if not folder.exists():
        pull(settings, entry.name, folder, owner)
    return str(folder)

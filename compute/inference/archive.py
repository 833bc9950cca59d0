"""The model archive: model directories stored in Stxrage under a name, per account.

This is the platform's side, behind ``/v1/models/archive``: every function acts for an owner the API has
authenticated. A name points at the CID of a directory archive (one content-addressed manifest of the
folder's files, identical files and chunks stored once). Clients push and pull through the API: a folder
goes up as one tar (``POST /v1/storage/files?archive=true``) and its files come back through
``/v1/storage``; the archive only names what is stored.
"""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import select

from compute.errors import ComputeError
from compute.inference.models import ArchivedModel
from compute.models import utcnow
from cxmpute.db import migrate, session_scope
from cxmpute.errors import NotFound
from cxmpute.settings import Settings
from stxrage import open_storage

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


class ArchivedOut(BaseModel):
    name: str
    owner: str
    cid: str = Field(description="CID of the directory archive")
    size: int = Field(description="Bytes in all files")
    files: int
    pushed_at: datetime


def _out(row: ArchivedModel) -> ArchivedOut:
    return ArchivedOut(
        name=row.name, owner=row.owner, cid=row.cid, size=row.size, files=row.files, pushed_at=row.pushed_at
    )


def _db(settings: Settings) -> str:
    url = settings.resolved_database_url
    migrate(url)
    return url


def check_name(name: str) -> None:
    if not NAME.match(name) or ".." in name:
        raise ComputeError(
            "names are letters, digits and . _ / - (up to 200), starting with a letter or digit",
            field="name",
            status_code=422,
        )


def _record(settings: Settings, owner: str, name: str, cid: str, size: int, files: int) -> ArchivedOut:
    """Point ``name`` at ``cid`` (a later push or naming of the same name replaces it)."""
    with session_scope(_db(settings)) as session:
        row = session.get(ArchivedModel, (owner, name)) or ArchivedModel(owner=owner, name=name)
        row.cid, row.size, row.files, row.pushed_at = cid, size, files, utcnow()
        session.add(row)
        session.flush()
        return _out(row)


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


def get(settings: Settings, name: str, owner: str) -> ArchivedOut:
    with session_scope(_db(settings)) as session:
        row = session.get(ArchivedModel, (owner, name))
        if row is None:
            raise NotFound(f"no model named {name!r} in the archive", field="name")
        return _out(row)


def ls(settings: Settings, owner: str, *, limit: int | None = None, offset: int = 0) -> list[ArchivedOut]:
    with session_scope(_db(settings)) as session:
        query = (
            select(ArchivedModel)
            .where(ArchivedModel.owner == owner)
            .order_by(ArchivedModel.name)
            .offset(offset)
            .limit(limit)
        )
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

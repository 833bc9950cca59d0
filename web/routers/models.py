"""/v1/models/archive: the caller's model archive, names that point at directory archives in storage.

The bytes travel through ``/v1/storage``: a client uploads a model folder's files there (or has a directory
archive stored already), then names them here; it pulls a model by reading the named archive's files from
``/v1/storage/files/{cid}/archive/{path}``. (The OpenAI-compatible ``GET /v1/models`` in inference.py is
another thing: the models the network serves.)
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from compute.errors import ComputeError
from compute.inference import archive
from compute.inference.archive import ArchivedOut
from cxmpute.settings import get_settings
from web.deps import owner_in

router = APIRouter(prefix="/v1/models/archive", tags=["models"])
Owner = Depends(owner_in("storage"))


class StoredFile(BaseModel):
    path: str = Field(..., max_length=1000, description="Where the file goes in the folder ('a/b.json')")
    cid: str = Field(..., max_length=120, description="The stored file (POST /v1/storage/files)")


class ArchiveIn(BaseModel):
    """Exactly one of ``cid`` and ``files``."""

    cid: str | None = Field(None, max_length=120,
                            description="A directory archive already stored that you may read")
    files: list[StoredFile] | None = Field(None, max_length=archive.MAX_FILES,
                                           description="Stored files to gather into one directory archive")


@router.get("", response_model=list[ArchivedOut], summary="Your archived models, by name")
def list_models(limit: int = Query(100, ge=1, le=1000, description="Page size"),
                offset: int = Query(0, ge=0, description="Models to skip"), owner: str = Owner
                ) -> list[ArchivedOut]:
    return archive.ls(get_settings(), owner, limit=limit, offset=offset)


@router.get("/{name:path}", response_model=ArchivedOut, summary="One archived model: its directory archive's CID")
def get_model(name: str, owner: str = Owner) -> ArchivedOut:
    archive.check_name(name)
    return archive.get(get_settings(), name, owner)


@router.put("/{name:path}", response_model=ArchivedOut,
            summary="Name a stored directory archive, or gather stored files into one (replaces the name)")
def put_model(name: str, body: ArchiveIn, owner: str = Owner) -> ArchivedOut:
    archive.check_name(name)
    if (body.cid is None) == (body.files is None):
        raise ComputeError("give either cid (a directory archive) or files (stored files, by path)",
                           field="cid", status_code=422)
    if body.cid is not None:
        return archive.name_cid(get_settings(), name, body.cid, owner)
    return archive.push_files(get_settings(), name, [(f.path, f.cid) for f in body.files or []], owner)


@router.delete("/{name:path}", response_model=ArchivedOut,
               summary="Drop a name (its directory archive stays stored: DELETE /v1/storage/files/{cid})")
def delete_model(name: str, owner: str = Owner) -> ArchivedOut:
    archive.check_name(name)
    return archive.remove(get_settings(), name, owner)

"""/v1/models/archive: the caller's model archive, names that point at directory archives in storage.

The bytes travel through ``/v1/storage``: a client uploads a model folder there as one directory archive (a
tar, ``POST /v1/storage/files?archive=true``), then names it here; it pulls a model by reading the named
archive's files from ``/v1/storage/files/{cid}/archive/{path}``. (The OpenAI-compatible ``GET /v1/models``
in inference.py is
another thing: the models the network serves.)
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from compute.inference import archive
from compute.inference.archive import ArchivedOut
from web.deps import SettingsDep, owner_in

router = APIRouter(prefix="/v1/models/archive", tags=["models"])
Owner = Depends(owner_in("storage"))


class ArchiveIn(BaseModel):
    cid: str = Field(..., max_length=120, description="A directory archive already stored that you may read")


@router.get("", response_model=list[ArchivedOut], summary="Your archived models, by name")
def list_models(
    settings: SettingsDep,
    limit: int = Query(100, ge=1, le=1000, description="Page size"),
    offset: int = Query(0, ge=0, description="Models to skip"),
    owner: str = Owner,
) -> list[ArchivedOut]:
    return archive.ls(settings, owner, limit=limit, offset=offset)


@router.get("/{name:path}", response_model=ArchivedOut, summary="One archived model: its directory archive's CID")
def get_model(settings: SettingsDep, name: str, owner: str = Owner) -> ArchivedOut:
    archive.check_name(name)
    return archive.get(settings, name, owner)


@router.put("/{name:path}", response_model=ArchivedOut, summary="Name a stored directory archive (replaces the name)")
def put_model(settings: SettingsDep, name: str, body: ArchiveIn, owner: str = Owner) -> ArchivedOut:
    archive.check_name(name)
    return archive.name_cid(settings, name, body.cid, owner)


@router.delete(
    "/{name:path}",
    response_model=ArchivedOut,
    summary="Drop a name (its directory archive stays stored: DELETE /v1/storage/files/{cid})",
)
def delete_model(settings: SettingsDep, name: str, owner: str = Owner) -> ArchivedOut:
    archive.check_name(name)
    return archive.remove(settings, name, owner)

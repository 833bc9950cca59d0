"""/v1/storage: streaming put and get (with HTTP range requests), stat, ls, pin/unpin, delete, nodes."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path as LocalPath
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, field_validator
from starlette.concurrency import run_in_threadpool

from agxnt.errors import AgentError
from compute.identity.tokens import Principal
from compute.ledger import Acct, balance
from compute.ledger.funds import slash_storage
from compute.models import Provider
from compute.network import Network
from compute.providers.registry import MAX_SKEW_S
from compute.store import get_store
from cxmpute.errors import Forbidden, Unauthorized
from cxmpute.settings import Settings
from stxrage import open_storage
from stxrage.archive_upload import MAX_MEMBERS, unpack
from stxrage.models import AuditReport, FileEntry, FileInfo, NodeInfo, PutStats, RepairReport, parse_policy
from stxrage.registration import check_credential, node_url, registration_signer
from stxrage.store import Storage
from web.deps import NetworkDep, SettingsDep, operator, owner_in, signed_in

router = APIRouter(prefix="/v1/storage", tags=["storage"])
T = TypeVar("T")
MB = 2**20
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def storage(settings: SettingsDep) -> Storage:
    return open_storage(settings)


async def _call(fn: Callable[..., T], *args, **kwargs) -> T:
    """Run a storage call off the event loop."""
    return await run_in_threadpool(fn, *args, **kwargs)


@router.post(
    "/files",
    response_model=PutStats,
    status_code=201,
    summary="Store a file, or a folder as one directory archive (streamed request body)",
    description="The body is the file's bytes, stored as one file. With `archive=true` it is a plain "
    "(uncompressed) tar of a folder instead, stored as one directory archive (one CID; its "
    "files are read back with `GET /files/{cid}/archive`). The tar holds regular files and "
    "folders only, at relative paths inside the folder: a link, device, fifo, absolute or "
    "`..` path, or a tar over the upload limit (CXMPUTE_STORAGE_MAX_UPLOAD_MB, which also "
    f"caps its unpacked files) or over {MAX_MEMBERS} members is refused with 422 naming "
    "`body`, and nothing is stored.",
)
async def put_file(
    settings: SettingsDep,
    request: Request,
    name: str | None = Query(None, max_length=500),
    private: bool = Query(False, description="Encrypt before the data leaves the platform"),
    public: bool = Query(False, description="Let anyone who knows the CID read it (default: you only)"),
    policy: str | None = Query(None, description="Copies ('3') or erasure k/n ('4/6')"),
    archive: bool = Query(False, description="The body is a tar of a folder: store it as one directory archive"),
    owner: str = Depends(owner_in("storage")),
    store: Storage = Depends(storage),
) -> PutStats:
    try:
        chosen = parse_policy(policy) if policy else None
    except ValueError as exc:
        raise AgentError(str(exc), field="policy") from None
    options = {"name": name, "owner": owner, "private": private, "public": public, "policy": chosen}
    if archive:
        return await _put_archive(settings, request, store, options)
    # The body is spooled to disk, never held in memory, then chunked from there.
    fd, tmp = tempfile.mkstemp(prefix="stxrage-upload-")
    try:
        with os.fdopen(fd, "wb") as f:
            async for part in request.stream():
                f.write(part)
        return await _call(_put_spooled, store, tmp, **options)
    finally:
        os.unlink(tmp)


def _put_spooled(store: Storage, path: str, **kwargs) -> PutStats:
    with open(path, "rb") as f:
        return store.put_stream(f, **kwargs)


async def _put_archive(settings: Settings, request: Request, store: Storage, options: dict[str, Any]) -> PutStats:
    """Spool the tar to disk, unpack it checked, and store the folder; the spool and the folder go after."""
    # Beside the platform's storage rather than in /tmp: a folder can be larger than a tmpfs.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    work = LocalPath(await _call(tempfile.mkdtemp, prefix=".upload-", dir=settings.data_dir))
    try:
        with (work / "upload.tar").open("wb") as f:
            async for part in request.stream():
                f.write(part)
        return await _call(_put_tar, store, work, settings.storage_max_upload_mb * MB, options)
    finally:
        await _call(shutil.rmtree, work, ignore_errors=True)


def _put_tar(store: Storage, work: LocalPath, max_bytes: int, options: dict[str, Any]) -> PutStats:
    folder = work / "folder"
    folder.mkdir()
    unpack(work / "upload.tar", folder, max_bytes=max_bytes)
    (work / "upload.tar").unlink()  # the folder is all put_dir reads: the disk holds one copy, not two
    return store.put_dir(folder, **options)


@router.get("/files", response_model=list[FileInfo], summary="List the caller's files")
async def list_files(owner: str = Depends(owner_in("storage")), store: Storage = Depends(storage)) -> list[FileInfo]:
    return await _call(store.ls, owner)


@router.get(
    "/files/{cid}/stat",
    response_model=FileInfo,
    summary="A file's size, chunks and policy (its owner is shown to the owner only)",
)
async def stat_file(cid: str, owner: str = Depends(owner_in("storage")), store: Storage = Depends(storage)) -> FileInfo:
    return await _call(store.stat, cid, owner)


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) from a single-range ``Range`` header; None serves the whole file."""
    if not header or not header.startswith("bytes="):
        return None
    match = _RANGE.match(header.replace(" ", ""))
    if match is None or (not match.group(1) and not match.group(2)):
        raise AgentError(f"unsupported Range {header!r}: use one range bytes=START-END", field="range", status_code=416)
    first, last = match.groups()
    if not first:  # suffix: the last N bytes
        start, end = max(0, size - int(last)), size
    else:
        start, end = int(first), min(size, int(last) + 1) if last else size
    if start >= size or start >= end:
        raise AgentError(f"range {header!r} is outside the file's {size} bytes", field="range", status_code=416)
    return start, end


async def _serve(store: Storage, cid: str, owner: str, request: Request, offset: int, size: int, etag: str) -> Response:
    """Stream bytes [offset, offset + size) of a stored file, honouring a single-range Range header."""
    span = _byte_range(request.headers.get("range"), size)
    start, end = span or (0, size)
    body: Iterator[bytes] = await _call(store.open_range, cid, owner, offset + start, offset + end)
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start), "ETag": f'"{etag}"'}
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return StreamingResponse(
        body, status_code=206 if span else 200, media_type="application/octet-stream", headers=headers
    )


@router.get(
    "/files/{cid}",
    summary="Fetch a file (streamed; honours Range)",
    responses={200: {"content": {"application/octet-stream": {}}}, 206: {"description": "Partial content"}},
)
async def get_file(
    cid: str, request: Request, owner: str = Depends(owner_in("storage")), store: Storage = Depends(storage)
) -> Response:
    info = await _call(store.stat, cid, owner)
    return await _serve(store, cid, owner, request, 0, info.size, cid)


@router.get("/files/{cid}/archive", response_model=list[FileEntry], summary="The files of a directory archive")
async def list_archive(
    cid: str, owner: str = Depends(owner_in("storage")), store: Storage = Depends(storage)
) -> list[FileEntry]:
    manifest = await _call(store.manifest, cid, owner)
    if manifest.kind != "dir":
        raise AgentError(f"{cid} is a file, not a directory archive", field="cid")
    return manifest.files


@router.get(
    "/files/{cid}/archive/{path:path}",
    summary="Fetch one file of a directory archive (honours Range)",
    responses={200: {"content": {"application/octet-stream": {}}}, 206: {"description": "Partial content"}},
)
async def get_archive_file(
    cid: str, path: str, request: Request, owner: str = Depends(owner_in("storage")), store: Storage = Depends(storage)
) -> Response:
    for entry in await list_archive(cid, owner, store):
        if entry.path == path:
            return await _serve(store, cid, owner, request, entry.offset, entry.size, f"{cid}/{path}")
    raise AgentError(f"no file {path!r} in archive {cid}", field="path", status_code=404)


@router.post("/files/{cid}/pin", response_model=FileInfo, summary="Keep a file (yours or a public one)")
async def pin_file(cid: str, owner: str = Depends(owner_in("storage")), store: Storage = Depends(storage)) -> FileInfo:
    return await _call(store.pin, cid, owner)


@router.post("/files/{cid}/unpin", response_model=FileInfo, summary="Let garbage collection take a file")
async def unpin_file(
    cid: str, owner: str = Depends(owner_in("storage")), store: Storage = Depends(storage)
) -> FileInfo:
    return await _call(store.unpin, cid, owner)


@router.post(
    "/files/{cid}/publish", response_model=FileInfo, summary="Let anyone who knows the CID read one of your files"
)
async def publish_file(
    cid: str, owner: str = Depends(owner_in("storage")), store: Storage = Depends(storage)
) -> FileInfo:
    return await _call(store.publish, cid, owner, True)


@router.post("/files/{cid}/unpublish", response_model=FileInfo, summary="Make one of your files yours only again")
async def unpublish_file(
    cid: str, owner: str = Depends(owner_in("storage")), store: Storage = Depends(storage)
) -> FileInfo:
    return await _call(store.publish, cid, owner, False)


@router.delete("/files/{cid}", status_code=204, summary="Delete one of your files")
async def delete_file(
    cid: str, owner: str = Depends(owner_in("storage")), store: Storage = Depends(storage)
) -> Response:
    await _call(store.delete, cid, owner)
    return Response(status_code=204)


class NodeRegistration(BaseModel):
    """A provider's storage node, signed by the provider's wallet: EIP-712 ``StorageNodeRegistration``
    (provider, url, credentialHash = sha256(credential), issuedAt) in the platform's domain."""

    url: str = Field(..., max_length=500, description="http(s)://host[:port] the node listens on")
    credential: str = Field(
        ...,
        min_length=32,
        max_length=200,
        description="The credential the node requires (its <dir>/node.token); the platform "
        "presents it to the node and never shows it again",
    )
    issued_at: int = Field(..., ge=0, lt=2**63, description="Unix seconds when the provider signed")
    signature: str = Field(..., max_length=200)

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return node_url(url)

    @field_validator("credential")
    @classmethod
    def _credential(cls, credential: str) -> str:
        return check_credential(credential)


def _require_staked_provider(net: Network, settings: Settings, address: str) -> None:
    """Storage is a provision like any other: only a registered provider holding the minimum stake offers it."""
    with net.store.read() as session:
        if session.get(Provider, address) is None:
            raise Forbidden("register as a provider before adding storage nodes", field="provider")
        staked = balance(session, Acct("stake", address))
    if staked < settings.min_stake_gwei:
        raise Forbidden(f"stake of {staked} gwei is below the minimum {settings.min_stake_gwei}", field="stake")


@router.get(
    "/nodes",
    dependencies=[Depends(operator)],
    response_model=list[NodeInfo],
    summary="Storage nodes and their status (operator)",
)
async def list_nodes(store: Storage = Depends(storage)) -> list[NodeInfo]:
    return await _call(store.nodes)


@router.get("/nodes/mine", response_model=list[NodeInfo], summary="The storage nodes you registered")
async def my_nodes(
    principal: Principal = Depends(signed_in("provider")), store: Storage = Depends(storage)
) -> list[NodeInfo]:
    return await _call(store.nodes, principal.address)


@router.post("/nodes", response_model=NodeInfo, status_code=201, summary="Register your storage node")
async def add_node(
    settings: SettingsDep,
    net: NetworkDep,
    body: NodeRegistration,
    principal: Principal = Depends(signed_in("provider")),
    store: Storage = Depends(storage),
) -> NodeInfo:
    provider = principal.address
    if abs(time.time() - body.issued_at) > MAX_SKEW_S:
        raise Unauthorized("registration is stale or from the future", field="issued_at")
    try:
        signer = registration_signer(
            net.domain.as_eip712(), provider, body.url, body.credential, body.issued_at, body.signature
        )
    except ValueError:
        raise Unauthorized("signature is malformed", field="signature") from None
    if signer != provider:
        raise Unauthorized(f"the registration is not signed by {provider}", field="signature")
    await _call(_require_staked_provider, net, settings, provider)
    return await _call(
        store.register_node, body.url, credential=body.credential, provider=provider, issued_at=body.issued_at
    )


@router.delete(
    "/nodes/{node_id}",
    dependencies=[Depends(operator)],
    response_model=NodeInfo,
    summary="Evict a storage node (operator); repair then moves its blocks",
)
async def remove_node(node_id: str = Path(..., max_length=64), store: Storage = Depends(storage)) -> NodeInfo:
    return await _call(store.remove_node, node_id)


@router.post(
    "/audit",
    dependencies=[Depends(operator)],
    response_model=AuditReport,
    summary="Challenge nodes for a sample of fragments",
)
async def audit(
    settings: SettingsDep, sample: int | None = Query(None, ge=1, le=100_000), store: Storage = Depends(storage)
) -> AuditReport:
    report = await _call(store.audit, sample)
    if report.evicted:
        await _call(slash_storage, get_store(settings.resolved_database_url), report.evicted)
    return report


@router.post(
    "/repair",
    dependencies=[Depends(operator)],
    response_model=RepairReport,
    summary="Rebuild lost redundancy on healthy nodes",
)
async def repair(store: Storage = Depends(storage)) -> RepairReport:
    await _call(store.check_nodes)
    return await _call(store.repair)

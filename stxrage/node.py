"""A storage node: the HTTP service a provider runs (`cxmpute storage node`) over its own disk,
with a quota and a price. It accepts only blocks whose bytes match their CID and answers audit
challenges from the bytes it holds.

Every route but ``/health`` requires the node's credential (``Authorization: Bearer ...``): only the
platform that registered the node, which holds the credential, may read, write, list, delete or audit blocks.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from stxrage import cid as cids
from stxrage.blockstore import BlockMissing, LocalBlockStore, QuotaExceeded, audit_answer
from stxrage.chunker import BLOCK_LIMIT
from stxrage.registration import check_credential, credential_matches, node_credential


class NodeConfig(BaseModel):
    root: Path
    quota_bytes: int = Field(10 * 1024**3, gt=0)
    price_per_gb_month: float = Field(0.0, ge=0)
    credential: str | None = Field(
        None, description="Bearer credential callers must present; default: the one kept in <root>/node.token"
    )


class AuditChallenge(BaseModel):
    nonce: str = Field(pattern=r"^[0-9a-fA-F]{16,128}$", description="Fresh random hex chosen by the auditor")


def resolved_credential(config: NodeConfig) -> str:
    return check_credential(config.credential) if config.credential else node_credential(config.root)


def create_node_app(config: NodeConfig) -> FastAPI:
    config.root.mkdir(parents=True, exist_ok=True)
    credential = resolved_credential(config)
    store = LocalBlockStore(config.root / "blocks", quota_bytes=config.quota_bytes)
    # No interactive docs or schema: nothing but /health answers a caller without the credential.
    app = FastAPI(title="Stxrage storage node", docs_url=None, redoc_url=None, openapi_url=None)

    def authorized(authorization: str | None = Header(None)) -> None:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not credential_matches(token.strip(), credential):
            raise HTTPException(
                401, "this storage node requires its credential", headers={"WWW-Authenticate": "Bearer"}
            )

    blocks = APIRouter(dependencies=[Depends(authorized)])

    def checked(cid: str) -> str:
        try:
            cids.parse(cid)
        except cids.InvalidCID as exc:
            raise HTTPException(400, str(exc)) from None
        return cid

    @app.exception_handler(BlockMissing)
    async def _missing(_: Request, exc: BlockMissing) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": f"block {exc.args[0]} is not held here"})

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @blocks.get("/info")
    def info() -> dict:
        return {
            "capacity_bytes": config.quota_bytes,
            "used_bytes": store.usage(),
            "price_per_gb_month": config.price_per_gb_month,
        }

    @blocks.get("/blocks")
    def list_blocks() -> dict:
        return {"cids": list(store.cids())}

    @blocks.put("/blocks/{cid}", status_code=201)
    async def put_block(cid: str, request: Request) -> dict:
        checked(cid)
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > BLOCK_LIMIT:
                raise HTTPException(413, f"blocks are limited to {BLOCK_LIMIT} bytes")
        if not cids.matches(cid, body):
            raise HTTPException(400, "body does not match the CID it was sent under")
        try:
            store.put(cid, bytes(body))
        except QuotaExceeded as exc:
            return JSONResponse(status_code=507, content={"detail": str(exc)})
        return {"cid": cid, "size": len(body)}

    @blocks.get("/blocks/{cid}")
    def get_block(cid: str) -> Response:
        return Response(store.get(checked(cid)), media_type="application/octet-stream")

    @blocks.head("/blocks/{cid}")
    def head_block(cid: str) -> Response:
        if not store.has(checked(cid)):
            raise BlockMissing(cid)
        return Response(status_code=200)

    @blocks.delete("/blocks/{cid}", status_code=204)
    def delete_block(cid: str) -> Response:
        store.delete(checked(cid))
        return Response(status_code=204)

    @blocks.post("/audit/{cid}")
    def audit(cid: str, challenge: AuditChallenge) -> dict:
        return {"cid": cid, "answer": audit_answer(bytes.fromhex(challenge.nonce), store.get(checked(cid)))}

    app.include_router(blocks)
    return app

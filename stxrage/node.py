"""A storage node: the HTTP service a provider runs (`cxmpute storage node`) over its own disk,
with a quota and a price. It accepts only blocks whose bytes match their CID and answers audit
challenges from the bytes it holds."""

from __future__ import annotations

import uuid
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from stxrage import cid as cids
from stxrage.blockstore import BlockMissing, LocalBlockStore, QuotaExceeded, audit_answer
from stxrage.chunker import BLOCK_LIMIT


class NodeConfig(BaseModel):
    root: Path
    quota_bytes: int = Field(10 * 1024**3, gt=0)
    price_per_gb_month: float = Field(0.0, ge=0)
    provider: str | None = Field(None, description="EVM address of the provider account running this node")
    node_id: str | None = None


class AuditChallenge(BaseModel):
    nonce: str = Field(pattern=r"^[0-9a-fA-F]{16,128}$", description="Fresh random hex chosen by the auditor")


def _node_id(root: Path) -> str:
    path = root / "node-id"
    if not path.exists():
        path.write_text(uuid.uuid4().hex)
    return path.read_text().strip()


def create_node_app(config: NodeConfig) -> FastAPI:
    config.root.mkdir(parents=True, exist_ok=True)
    store = LocalBlockStore(config.root / "blocks", quota_bytes=config.quota_bytes)
    node_id = config.node_id or _node_id(config.root)
    app = FastAPI(title="Stxrage storage node", description="Content-addressed block storage with audits.")

    def checked(cid: str) -> str:
        try:
            cids.parse(cid)
        except cids.InvalidCID as exc:
            raise HTTPException(400, str(exc)) from None
        return cid

    @app.exception_handler(BlockMissing)
    async def _missing(_: Request, exc: BlockMissing) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": f"block {exc.args[0]} is not held here"})

    @app.get("/info")
    def info() -> dict:
        return {"id": node_id, "capacity_bytes": config.quota_bytes, "used_bytes": store.usage(),
                "price_per_gb_month": config.price_per_gb_month, "provider": config.provider}

    @app.get("/blocks")
    def list_blocks() -> dict:
        return {"cids": list(store.cids())}

    @app.put("/blocks/{cid}", status_code=201)
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

    @app.get("/blocks/{cid}")
    def get_block(cid: str) -> Response:
        return Response(store.get(checked(cid)), media_type="application/octet-stream")

    @app.head("/blocks/{cid}")
    def head_block(cid: str) -> Response:
        if not store.has(checked(cid)):
            raise BlockMissing(cid)
        return Response(status_code=200)

    @app.delete("/blocks/{cid}", status_code=204)
    def delete_block(cid: str) -> Response:
        store.delete(checked(cid))
        return Response(status_code=204)

    @app.post("/audit/{cid}")
    def audit(cid: str, challenge: AuditChallenge) -> dict:
        return {"cid": cid, "answer": audit_answer(bytes.fromhex(challenge.nonce), store.get(checked(cid)))}

    return app

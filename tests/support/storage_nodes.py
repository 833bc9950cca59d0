"""Storage nodes and storage providers for the suites that test the platform from outside.

A real storage node (:mod:`stxrage.node`) and a hostile one (it answers as any node it likes and records
what callers send it) are served by uvicorn on free loopback ports; a provider registers, and stakes, through
the platform's HTTP API with the platform client providers run.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn
from eth_account import Account
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from compute.providers.hardware import HardwareProfile
from compute.worker.platform import Platform
from cxmpute.ports import free_port
from stxrage.blockstore import audit_answer
from stxrage.node import NodeConfig, create_node_app
from stxrage.registration import CREDENTIAL_FILE, sign_registration
from tests.support.up import UpPlatform


class Served:
    """An ASGI app on 127.0.0.1 in a thread of this process."""

    def __init__(self, app) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"nothing listens on {self.url}")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


@dataclass
class StorageNode:
    served: Served
    root: Path

    @property
    def url(self) -> str:
        return self.served.url

    @property
    def credential(self) -> str:
        return (self.root / CREDENTIAL_FILE).read_text().strip()

    def blocks(self) -> set[str]:
        return {p.name for p in (self.root / "blocks").glob("*/*") if not p.name.startswith(".")}


def storage_node(root: Path, quota_bytes: int = 1024**3) -> StorageNode:
    """`cxmpute storage node`'s app over ``root``: it makes its own credential there on first start."""
    return StorageNode(Served(create_node_app(NodeConfig(root=root, quota_bytes=quota_bytes))), root)


@dataclass
class HostileNode:
    """Answers /info with whatever ``info`` says (a document, raw JSON text, or ``"redirect"``: a redirect to
    ``redirect_to``), takes any block with or without a credential, and records every Authorization header
    it is sent."""

    info: dict | str = field(
        default_factory=lambda: {
            "id": "local",
            "capacity_bytes": 10 * 1024**3,
            "used_bytes": 0,
            "price_per_gb_month": 0.0,
            "provider": "0x" + "11" * 20,
        }
    )
    redirect_to: str = ""
    authorizations: set[str] = field(default_factory=set)
    held: dict[str, bytes] = field(default_factory=dict)
    served: Served | None = None

    @property
    def url(self) -> str:
        assert self.served is not None
        return self.served.url

    def start(self) -> HostileNode:
        app = FastAPI()

        @app.middleware("http")
        async def record(request: Request, call_next):
            if "authorization" in request.headers:
                self.authorizations.add(request.headers["authorization"])
            return await call_next(request)

        @app.get("/info")
        def info() -> Response:
            if self.info == "redirect":
                return RedirectResponse(self.redirect_to, status_code=307)
            if isinstance(self.info, str):
                return Response(self.info, media_type="application/json")
            return JSONResponse(self.info)

        @app.put("/blocks/{cid}")
        async def put(cid: str, request: Request) -> dict:
            self.held[cid] = await request.body()
            return {"cid": cid}

        @app.get("/blocks/{cid}")
        def get(cid: str) -> Response:
            if cid not in self.held:
                return JSONResponse({"detail": "missing"}, status_code=404)
            return Response(self.held[cid], media_type="application/octet-stream")

        @app.head("/blocks/{cid}")
        def head(cid: str) -> Response:
            return Response(status_code=200 if cid in self.held else 404)

        @app.delete("/blocks/{cid}")
        def delete(cid: str) -> Response:
            self.held.pop(cid, None)
            return Response(status_code=204)

        @app.get("/blocks")
        def listing() -> dict:
            return {"cids": list(self.held)}

        @app.post("/audit/{cid}")
        def audit(cid: str, challenge: dict) -> dict:
            return {"cid": cid, "answer": audit_answer(bytes.fromhex(challenge["nonce"]), self.held.get(cid, b""))}

        self.served = Served(app)
        return self


@dataclass
class StorageProvider:
    account: Account
    auth: dict[str, str]
    domain: dict

    def registration(
        self, url: str, credential: str, *, issued_at: int | None = None, signer: Account | None = None
    ) -> dict:
        """The body of POST /v1/storage/nodes, signed by ``signer`` (default: this provider's wallet)."""
        issued = int(time.time()) if issued_at is None else issued_at
        signature = sign_registration(self.domain, signer or self.account, url, credential, issued)
        return {"url": url, "credential": credential, "issued_at": issued, "signature": signature}


def operator_headers(platform: UpPlatform) -> dict[str, str]:
    """The operator's Authorization header; the API writes its token to the data dir when it first checks a
    credential, so one is checked first."""
    httpx.get(f"{platform.url}/v1/account/balance", headers={"Authorization": "Bearer cxs_nothing"}, timeout=10)
    return platform.operator


def storage_provider(platform: UpPlatform, *, stake_gwei: int = 0) -> StorageProvider:
    """A wallet signed in, registered as a provider (signed) and, with ``stake_gwei``, staked on the chain."""
    account = Account.create()
    if stake_gwei:
        operator_headers(platform)
        platform.fund(account.address, stake_gwei // 10**9 + 1)

    async def join() -> StorageProvider:
        client = Platform(platform.url, account)
        try:
            await client.sign_in()
            await client.register(
                "storage", "local", HardwareProfile(cpu_count=2, cpu_model="test", memory_mb=2048, disk_gb=100)
            )
            if stake_gwei:
                await client.ensure_stake(stake_gwei)
            return StorageProvider(account, client.headers, client.domain.as_eip712())
        finally:
            await client.close()

    return asyncio.run(join())

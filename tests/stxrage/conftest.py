"""Storage fixtures: a fresh catalog and data directory per test, and storage nodes served for real
by uvicorn on 127.0.0.1 that a test can stop, restart and tamper with."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from cxmpute.ports import free_port
from cxmpute.settings import get_settings
from stxrage.node import NodeConfig, create_node_app
from stxrage.registration import CREDENTIAL_FILE
from stxrage.store import Storage

PROVIDER = "0x" + "ab" * 20


class NodeServer:
    def __init__(self, root: Path, quota_bytes: int = 2 * 1024**3):
        self.root = root
        self.port = free_port()
        self.config = NodeConfig(root=root, quota_bytes=quota_bytes, price_per_gb_month=0.5)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def credential(self) -> str:
        """What the node generated in its directory on first start."""
        return (self.root / CREDENTIAL_FILE).read_text().strip()

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        config = uvicorn.Config(
            create_node_app(self.config), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        for _ in range(200):  # bounded wait for the socket to listen
            if self._server.started:
                return
            time.sleep(0.025)
        raise RuntimeError(f"storage node on port {self.port} did not start")

    def stop(self) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._server = self._thread = None

    def block_path(self, cid: str) -> Path:
        return self.root / "blocks" / cid[-2:] / cid

    def corrupt(self, cid: str) -> None:
        path = self.block_path(cid)
        data = bytearray(path.read_bytes() or b"\0")
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    def files(self) -> list[Path]:
        return [p for p in (self.root / "blocks").glob("*/*") if not p.name.startswith(".")]


@pytest.fixture
def make_storage(tmp_path: Path):
    made: list[Storage] = []

    def make(name: str = "client", **overrides) -> Storage:
        settings = get_settings().model_copy(update=overrides)
        storage = Storage(settings, database_url=f"sqlite:///{tmp_path / name}.db", root=tmp_path / name)
        made.append(storage)
        return storage

    yield make
    for storage in made:
        storage.close()


@pytest.fixture
def storage(make_storage) -> Storage:
    return make_storage()


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[NodeServer]]:
    servers = [NodeServer(tmp_path / f"node{i}") for i in range(5)]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        if server.running:
            server.stop()


@pytest.fixture
def cluster(make_storage, nodes: list[NodeServer]) -> Storage:
    """A client whose blocks go to the five nodes (audit evictions off, so faults never shrink the cluster)."""
    storage = make_storage("cluster", storage_max_audit_failures=10_000)
    for server in nodes:
        storage.add_node(server.url, credential=server.credential, provider=PROVIDER)
    return storage

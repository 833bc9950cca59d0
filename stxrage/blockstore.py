"""Block stores: where bytes addressed by CID live. A local directory, or a storage node over HTTP.

Stores are opened from a URL by scheme (``file://``, ``http://``); ``register_scheme`` adds more.
Stores never decide what is true: every reader checks bytes against their CID.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import httpx

from cxmpute.http import client
from stxrage import cid as cids


class BlockMissing(KeyError):
    pass


class StoreUnavailable(ConnectionError):
    pass


class QuotaExceeded(OSError):
    pass


class BlockStore(Protocol):
    def put(self, cid: str, data: bytes) -> None: ...
    def get(self, cid: str) -> bytes: ...
    def has(self, cid: str) -> bool: ...
    def delete(self, cid: str) -> None: ...
    def cids(self) -> Iterator[str]: ...
    def usage(self) -> int: ...
    def audit(self, cid: str, nonce: bytes) -> str: ...


def audit_answer(nonce: bytes, data: bytes) -> str:
    """The proof of holding a block: only someone with its bytes can hash them behind a fresh nonce."""
    return hashlib.sha256(nonce + data).hexdigest()


class LocalBlockStore:
    """Blocks as files under ``root/<last two chars of cid>/<cid>``, written atomically."""

    def __init__(self, root: Path, quota_bytes: int | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.quota_bytes = quota_bytes
        self._used: int | None = None
        self._lock = threading.Lock()  # writers may run on several threads of a node

    def path(self, cid: str) -> Path:
        cids.parse(cid)  # refuses anything that is not a CID, so a path can never escape root
        return self.root / cid[-2:] / cid

    def put(self, cid: str, data: bytes) -> None:
        path = self.path(cid)
        with self._lock:
            previous = path.stat().st_size if path.exists() else 0
            if self.quota_bytes is not None and self.usage() - previous + len(data) > self.quota_bytes:
                raise QuotaExceeded(f"storing {len(data)} bytes would exceed the quota of {self.quota_bytes} bytes")
            path.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            self._used = self.usage() - previous + len(data)

    def get(self, cid: str) -> bytes:
        try:
            return self.path(cid).read_bytes()
        except FileNotFoundError:
            raise BlockMissing(cid) from None

    def has(self, cid: str) -> bool:
        return self.path(cid).exists()

    def delete(self, cid: str) -> None:
        path = self.path(cid)
        with self._lock:
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                return
            if self._used is not None:
                self._used -= size

    def cids(self) -> Iterator[str]:
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir():
                yield from sorted(p.name for p in sub.iterdir() if not p.name.startswith("."))

    def usage(self) -> int:
        if self._used is None:
            self._used = sum(p.stat().st_size for p in self.root.glob("*/*") if not p.name.startswith("."))
        return self._used

    def audit(self, cid: str, nonce: bytes) -> str:
        return audit_answer(nonce, self.get(cid))


class RemoteBlockStore:
    """A storage node's HTTP API (see :mod:`stxrage.node`)."""

    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self._http = client(self.url, timeout=httpx.Timeout(timeout, connect=3.0),
                            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16))

    def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"{self.url}: {exc}") from exc
        if response.status_code == 404:
            raise BlockMissing(path.rsplit("/", 1)[-1])
        if response.status_code == 507:
            raise QuotaExceeded(response.json().get("detail", "quota exceeded"))
        if response.status_code >= 400:
            # Any other refusal means this node will not serve the request; callers try another node.
            raise StoreUnavailable(f"{self.url}: HTTP {response.status_code} {response.text[:200]}")
        return response

    def put(self, cid: str, data: bytes) -> None:
        self._call("PUT", f"/blocks/{cid}", content=data)

    def get(self, cid: str) -> bytes:
        return self._call("GET", f"/blocks/{cid}").content

    def has(self, cid: str) -> bool:
        try:
            self._call("HEAD", f"/blocks/{cid}")
        except BlockMissing:
            return False
        return True

    def delete(self, cid: str) -> None:
        try:
            self._call("DELETE", f"/blocks/{cid}")
        except BlockMissing:
            return

    def cids(self) -> Iterator[str]:
        yield from self._call("GET", "/blocks").json()["cids"]

    def usage(self) -> int:
        return int(self.info()["used_bytes"])

    def info(self) -> dict:
        return self._call("GET", "/info").json()

    def audit(self, cid: str, nonce: bytes) -> str:
        return self._call("POST", f"/audit/{cid}", json={"nonce": nonce.hex()}).json()["answer"]


StoreFactory = Callable[[str], BlockStore]
_schemes: dict[str, StoreFactory] = {
    "file": lambda url: LocalBlockStore(Path(urlparse(url).path)),
    "http": RemoteBlockStore,
    "https": RemoteBlockStore,
}


def register_scheme(scheme: str, factory: StoreFactory) -> None:
    _schemes[scheme] = factory


def open_store(url: str) -> BlockStore:
    scheme = urlparse(url).scheme
    try:
        return _schemes[scheme](url)
    except KeyError:
        raise ValueError(f"no block store for URL scheme {scheme!r} (known: {', '.join(sorted(_schemes))})") from None

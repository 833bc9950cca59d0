"""Block stores: where bytes addressed by CID live. A local directory, or a storage node over HTTP.

Stores are opened from a URL by scheme (``file://``, ``http://``); ``register_scheme`` adds more.
Stores never decide what is true: every reader checks bytes against their CID.
"""

from __future__ import annotations

import hashlib
import json
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
from stxrage.chunker import BLOCK_LIMIT

_SMALL_ANSWER = 64 * 1024  # a node's info, an audit answer, an error
_LISTING = 256 * 1024 * 1024  # every CID a node holds: millions of them


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


def _is_cid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        cids.parse(value)
    except cids.InvalidCID:
        return False
    return True


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
    """A storage node's HTTP API (see :mod:`stxrage.node`), called with the node's credential."""

    def __init__(self, url: str, credential: str | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        # Redirects are never followed: a node must not steer the platform's requests to another address.
        self._http = client(
            self.url,
            timeout=httpx.Timeout(timeout, connect=3.0),
            headers=headers,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
        )

    def _call(self, method: str, path: str, limit: int = _SMALL_ANSWER, **kwargs) -> bytes:
        """The body of a 2xx answer, read up to ``limit`` bytes: a node can never make the caller hold more."""
        try:
            with self._http.stream(method, path, **kwargs) as response:
                if response.status_code == 404:
                    raise BlockMissing(path.rsplit("/", 1)[-1])
                if response.status_code == 507:
                    raise QuotaExceeded(f"{self.url} is full")
                if not response.is_success:
                    # Any other answer (a refusal, a redirect) means this node will not serve the request;
                    # callers try another node.
                    raise StoreUnavailable(f"{self.url}: HTTP {response.status_code} to {method} {path}")
                body = bytearray()
                for part in response.iter_bytes():
                    body += part
                    if len(body) > limit:
                        raise StoreUnavailable(f"{self.url}: the answer to {method} {path} exceeds {limit} bytes")
                return bytes(body)
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"{self.url}: {exc}") from exc

    def _json(self, method: str, path: str, limit: int = _SMALL_ANSWER, **kwargs) -> dict:
        try:
            doc = json.loads(self._call(method, path, limit, **kwargs))
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise StoreUnavailable(f"{self.url}: malformed answer to {method} {path}")
        return doc

    def _field(self, method: str, path: str, key: str, kind: type, limit: int = _SMALL_ANSWER, **kwargs):
        """One field of a JSON answer; a node answering anything else is treated as unavailable."""
        value = self._json(method, path, limit, **kwargs).get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise StoreUnavailable(f"{self.url}: malformed answer to {method} {path}")
        return value

    def put(self, cid: str, data: bytes) -> None:
        self._call("PUT", f"/blocks/{cid}", content=data)

    def get(self, cid: str) -> bytes:
        return self._call("GET", f"/blocks/{cid}", BLOCK_LIMIT)

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
        # A node's listing may only name blocks: anything else is dropped, never used in a request path.
        yield from (value for value in self._field("GET", "/blocks", "cids", list, _LISTING) if _is_cid(value))

    def usage(self) -> int:
        return self._field("GET", "/info", "used_bytes", int)

    def info(self) -> dict:
        """What the node declares: its quota (``capacity_bytes``), ``used_bytes`` and ``price_per_gb_month``."""
        return self._json("GET", "/info")

    def audit(self, cid: str, nonce: bytes) -> str:
        return self._field("POST", f"/audit/{cid}", "answer", str, json={"nonce": nonce.hex()})


# (url, credential) -> store; the credential is what the store presents to the node, when it has one.
StoreFactory = Callable[[str, str | None], BlockStore]
_schemes: dict[str, StoreFactory] = {
    "file": lambda url, credential: LocalBlockStore(Path(urlparse(url).path)),
    "http": RemoteBlockStore,
    "https": RemoteBlockStore,
}


def register_scheme(scheme: str, factory: StoreFactory) -> None:
    _schemes[scheme] = factory


def open_store(url: str, credential: str | None = None) -> BlockStore:
    scheme = urlparse(url).scheme
    try:
        factory = _schemes[scheme]
    except KeyError:
        raise ValueError(f"no block store for URL scheme {scheme!r} (known: {', '.join(sorted(_schemes))})") from None
    return factory(url, credential)

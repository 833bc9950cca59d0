"""Storage: the client every part of the platform stores files through.

put: content-defined chunks → (private: sealed on this side) → raw blocks addressed by CID →
each block replicated or erasure-coded onto nodes chosen by rendezvous hashing → a manifest
block naming the chunks, whose CID is the file's id. get: every fragment and block is checked
against its CID, bad copies are marked and read around. The catalog is written in one
transaction after the data is placed, so a failed put leaves no half-written file behind.
"""

from __future__ import annotations

import math
import os
import random
import tempfile
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from pydantic import TypeAdapter
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cxmpute.db import migrate, session_scope
from cxmpute.errors import Conflict, Forbidden, NotFound
from cxmpute.settings import Settings
from stxrage import cid as cids
from stxrage import crypto, erasure, placement
from stxrage.blockstore import (
    BlockMissing,
    BlockStore,
    QuotaExceeded,
    RemoteBlockStore,
    StoreUnavailable,
    audit_answer,
    open_store,
)
from stxrage.catalog import BlockRow, FileRow, FragmentRow, ManifestRow, NodeRow, RefRow, insert_ignore, utcnow
from stxrage.chunker import BLOCK_LIMIT, chunk_bytes, chunk_stream
from stxrage.errors import DataLost, NotEnoughNodes, StorageError
from stxrage.models import (
    AuditReport,
    ChunkRef,
    Erasure,
    FileEntry,
    FileInfo,
    MaintenanceReport,
    Manifest,
    NodeInfo,
    Policy,
    PutStats,
    Redundancy,
    RepairReport,
    Replicas,
)
from stxrage.registration import check_credential, check_resolves_safely, credential_matches, node_url

Progress = Callable[[int], None]
_policy_adapter: TypeAdapter[Replicas | Erasure] = TypeAdapter(Policy)
_BATCH = 32  # blocks checked against the catalog per query
_IN_FLIGHT = 64  # blocks being placed while the next chunks are cut and hashed
_READ_AHEAD = 16  # blocks fetched ahead of the reader
_IN_CHUNK = 500  # keeps IN (...) lists under every database's bound-parameter limit
LOCAL_NODE = "local"
_PART_CHUNKS = 4096  # chunk entries per manifest part: well under 1 MiB even with private digests
# Bounds on what a node may declare: its quota weighs its share of placement, so an absurd one is refused.
_MAX_CAPACITY = 2**50
_MAX_PRICE = 1e9


def _batched(items: list, size: int = _IN_CHUNK) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Storage:
    def __init__(
        self, settings: Settings, *, database_url: str | None = None, root: Path | None = None, workers: int = 8
    ):
        self.settings = settings
        self.database_url = database_url or settings.resolved_database_url
        migrate(self.database_url)
        self.root = Path(root or settings.storage_dir or settings.data_dir / "stxrage")
        # node id -> ((url, credential) it was opened with, store)
        self._stores: dict[str, tuple[tuple[str, str | None], BlockStore]] = {}
        self._stores_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="stxrage")
        self._secret = settings.resolved_secret_key()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _session(self):
        return session_scope(self.database_url)

    # ---- nodes -------------------------------------------------------------------------------

    def add_node(
        self,
        url: str,
        *,
        credential: str | None = None,
        capacity_bytes: int | None = None,
        price_per_gb_month: float | None = None,
        provider: str | None = None,
    ) -> NodeInfo:
        """Register a block store as the operator: a storage node (``http(s)://``, with the credential it
        requires) or a directory (``file://``). The platform assigns the id; the node declares quota and price."""
        return self._enroll(
            url.rstrip("/"),
            credential,
            provider=provider,
            capacity_bytes=capacity_bytes,
            price_per_gb_month=price_per_gb_month,
        )

    def register_node(self, url: str, *, credential: str, provider: str, issued_at: int) -> NodeInfo:
        """Register a provider's storage node once its signed registration has been checked: an http(s)
        address only, never one another account's node holds, and never an older registration again."""
        try:
            url = node_url(url)
            check_resolves_safely(url)
        except ValueError as exc:
            raise StorageError(str(exc), field="url", status_code=422) from None
        return self._enroll(url, credential, provider=provider, issued_at=issued_at, by_provider=True)

    def _enroll(
        self,
        url: str,
        credential: str | None,
        *,
        provider: str | None,
        issued_at: int = 0,
        by_provider: bool = False,
        capacity_bytes: int | None = None,
        price_per_gb_month: float | None = None,
    ) -> NodeInfo:
        if credential is not None:
            try:
                check_credential(credential)
            except ValueError as exc:
                raise StorageError(str(exc), field="credential", status_code=422) from None
        try:
            store = open_store(url, credential)
        except ValueError as exc:
            raise StorageError(str(exc), field="url") from None
        declared: tuple[int, float] = (100 * 1024**3, 0.0)
        if isinstance(store, RemoteBlockStore):
            if credential is None:
                raise StorageError(
                    "a storage node is registered with the credential it requires (its <dir>/node.token)",
                    field="credential",
                )
            declared = _declared(store, url)
        try:
            with self._session() as s:
                row = s.scalars(select(NodeRow).where(NodeRow.url == url)).first()
                if row is not None:
                    row = self._reenroll(s, row, credential, provider, issued_at, by_provider)
                if row is None:
                    row = NodeRow(
                        id=LOCAL_NODE if url == self._local_url() else uuid.uuid4().hex,
                        url=url,
                        audit_failures=0,
                        registered_ts=0,
                        status="active",
                    )
                    s.add(row)
                elif not by_provider:
                    row.status = "active"  # the operator's word brings a down or evicted node back
                row.capacity_bytes = capacity_bytes or declared[0]
                row.price_per_gb_month = declared[1] if price_per_gb_month is None else price_per_gb_month
                row.provider = provider if by_provider else provider or row.provider
                row.credential = credential
                row.registered_ts = max(row.registered_ts, issued_at)
                s.flush()
                info = self._node_info(row)
        except IntegrityError:
            raise Conflict(f"{url} was registered by another request meanwhile", field="url") from None
        with self._stores_lock:
            self._stores[info.id] = ((url, credential), store)
        return info

    def _reenroll(
        self, s: Session, row: NodeRow, credential: str | None, provider: str | None, issued_at: int, by_provider: bool
    ) -> NodeRow | None:
        """The node already registered at this address, to update; None once a retired one made way."""
        if (
            row.status == "evicted"
            and s.scalar(select(FragmentRow.idx).where(FragmentRow.node_id == row.id).limit(1)) is None
        ):
            # An evicted node that holds nothing any more frees its address for a new registration.
            s.delete(row)
            s.flush()
            return None
        if by_provider:
            if row.provider != provider or row.credential is None:
                raise Conflict(f"{row.url} is registered to another storage node", field="url")
            if issued_at <= row.registered_ts:
                raise StorageError(
                    "registration replayed: issued_at is not newer than the node's last registration",
                    field="issued_at",
                    status_code=401,
                )
        # A node registered without a credential (the local directory, or a node from before credentials)
        # takes the operator's; otherwise the credential is what tells one node from another at an address.
        same = (row.credential is None and not by_provider) or (
            row.credential is not None and credential is not None and credential_matches(credential, row.credential)
        )
        if not same:
            raise Conflict(
                f"{row.url} is node {row.id}, registered with another credential; remove {row.id} and repair first",
                field="url",
            )
        if row.status == "evicted" and by_provider:
            raise Conflict(f"node {row.id} at {row.url} was evicted", field="url")
        return row

    def remove_node(self, node_id: str) -> NodeInfo:
        """Take a node out of placement; its fragments count as lost and the next repair moves them."""
        with self._session() as s:
            row = s.get(NodeRow, node_id)
            if row is None:
                raise NotFound(f"no storage node {node_id!r}", field="node_id")
            row.status = "evicted"
            return self._node_info(row)

    def nodes(self, provider: str | None = None) -> list[NodeInfo]:
        """Every node, or those one provider registered."""
        query = select(NodeRow).order_by(NodeRow.created_at, NodeRow.id)
        if provider is not None:
            query = query.where(NodeRow.provider == provider)
        with self._session() as s:
            return [self._node_info(r) for r in s.scalars(query)]

    def check_nodes(self) -> list[NodeInfo]:
        """Ping every node: unreachable ones go down; returning ones drop blocks reassigned meanwhile."""
        self._forget_changed_stores()
        for node in self.nodes():
            if node.status == "evicted":
                continue
            store = self._store(node.id)
            try:
                store.usage()  # cheap liveness probe
                if node.status == "down":
                    # Swept while still marked down, so no put in flight can be targeting it.
                    with self._session() as s:
                        assigned = set(
                            s.scalars(select(FragmentRow.fragment_cid).where(FragmentRow.node_id == node.id))
                        )
                    for orphan in set(store.cids()) - assigned:
                        store.delete(orphan)
                    self._set_status(node.id, "active")
            except StoreUnavailable:
                self._set_status(node.id, "down")
        return self.nodes()

    def _set_status(self, node_id: str, status: str) -> None:
        with self._session() as s:
            s.execute(update(NodeRow).where(NodeRow.id == node_id).values(status=status))

    @staticmethod
    def _node_info(row: NodeRow) -> NodeInfo:
        return NodeInfo(
            id=row.id,
            url=row.url,
            capacity_bytes=row.capacity_bytes,
            price_per_gb_month=row.price_per_gb_month,
            provider=row.provider,
            status=row.status,
            audit_failures=row.audit_failures,
        )

    def _local_url(self) -> str:
        return f"file://{self.root / 'blocks'}"

    def _active_nodes(self) -> list[tuple[str, float]]:
        with self._session() as s:
            rows = list(s.execute(select(NodeRow.id, NodeRow.capacity_bytes, NodeRow.status)))
        if not rows:
            # The embedded default: the local directory is the one node (concurrent first puts may race here).
            with self._session() as s:
                insert_ignore(
                    s,
                    NodeRow,
                    [
                        {
                            "id": LOCAL_NODE,
                            "url": self._local_url(),
                            "capacity_bytes": 100 * 1024**3,
                            "price_per_gb_month": 0.0,
                            "status": "active",
                            "audit_failures": 0,
                            "created_at": utcnow(),
                        }
                    ],
                )
            return self._active_nodes()
        return [(node_id, float(capacity)) for node_id, capacity, status in rows if status == "active"]

    def _store(self, node_id: str) -> BlockStore:
        with self._stores_lock:
            cached = self._stores.get(node_id)
        if cached is not None:
            return cached[1]
        with self._session() as s:
            row = s.get(NodeRow, node_id)
            if row is None:
                raise NotFound(f"no storage node {node_id!r}", field="node_id")
            key = (row.url, row.credential)
        store = open_store(*key)
        with self._stores_lock:
            self._stores[node_id] = (key, store)
        return store

    def _forget_changed_stores(self) -> None:
        """Drop handles on nodes whose address or credential another process has registered anew since."""
        with self._session() as s:
            current = {
                node_id: (url, credential)
                for node_id, url, credential in s.execute(select(NodeRow.id, NodeRow.url, NodeRow.credential))
            }
        with self._stores_lock:
            for node_id in [n for n, (key, _) in self._stores.items() if current.get(n) != key]:
                del self._stores[node_id]

    def default_policy(self) -> Replicas:
        active = self._active_nodes()
        if len(active) == 1:
            return Replicas(copies=1)
        return Replicas(copies=min(self.settings.storage_replicas, len(active)))

    # ---- put ---------------------------------------------------------------------------------

    def put_bytes(self, data: bytes, **kwargs) -> PutStats:
        return self._put(chunk_bytes(data), **kwargs)

    def put_file(self, path: str | os.PathLike, *, name: str | None = None, **kwargs) -> PutStats:
        path = Path(path)
        with path.open("rb") as f:
            return self._put(chunk_stream(f), name=name or path.name, **kwargs)

    def put_stream(self, stream: BinaryIO, **kwargs) -> PutStats:
        return self._put(chunk_stream(stream), **kwargs)

    def put_dir(self, path: str | os.PathLike, *, name: str | None = None, **kwargs) -> PutStats:
        """Store a directory as one archive (e.g. a model that loads with ``from_pretrained``)."""
        root = Path(path)
        if not root.is_dir():
            raise StorageError(f"{root} is not a directory", field="path")
        files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
        entries: list[FileEntry] = []

        def chunks() -> Iterator[bytes]:
            offset = 0
            for file in files:
                size = 0
                with file.open("rb") as f:
                    for chunk in chunk_stream(f):
                        size += len(chunk)
                        yield chunk
                entries.append(FileEntry(path=file.relative_to(root).as_posix(), offset=offset, size=size))
                offset += size

        return self._put(chunks(), name=name or root.name, entries=entries, **kwargs)

    def get_dir(
        self, cid: str, dest: str | os.PathLike, owner: str = "local", progress: Progress | None = None
    ) -> Path:
        """Write a directory archive's files under ``dest``, each verified on the way."""
        manifest = self.manifest(cid, owner)
        if manifest.kind != "dir":
            raise StorageError(f"{cid} is a file, not a directory archive", field="cid")
        dest = Path(dest)
        for entry in manifest.files:
            target = dest / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as f:
                for part in self.open_range(cid, owner, entry.offset, entry.offset + entry.size):
                    f.write(part)
                    if progress:
                        progress(len(part))
        return dest

    def _put(
        self,
        chunks: Iterable[bytes],
        *,
        owner: str = "local",
        name: str | None = None,
        private: bool = False,
        public: bool = False,
        policy: Replicas | Erasure | None = None,
        progress: Progress | None = None,
        entries: list[FileEntry] | None = None,
    ) -> PutStats:
        if private and public:
            raise StorageError("a private file is encrypted for its owner and cannot be public", field="public")
        policy = policy or self.default_policy()
        active = self._active_nodes()
        if policy.width > len(active):
            raise NotEnoughNodes(f"policy needs {policy.width} storage nodes, {len(active)} are active", field="policy")
        key = crypto.owner_key(self._secret, owner) if private else b""
        refs: list[ChunkRef] = []
        uploads = _Uploads(self, policy, active)
        batch: list[tuple[str, bytes]] = []
        size = 0
        for chunk in chunks:
            if private:
                stored, digest = crypto.seal_chunk(key, chunk)
                refs.append(ChunkRef(cid=cids.cid_of(stored), size=len(chunk), digest=digest.hex()))
            else:
                stored = chunk
                refs.append(ChunkRef(cid=cids.cid_of(chunk), size=len(chunk)))
            batch.append((refs[-1].cid, stored))
            size += len(chunk)
            if len(batch) >= _BATCH:
                uploads.add(batch)
                batch = []
            if progress:
                progress(len(chunk))
        # Directory archives fill ``entries`` while their chunks are consumed above.
        kind, files = ("dir", entries) if entries is not None else ("file", [])
        manifest_cid, manifest_bytes = _encode_manifest(Manifest(kind=kind, size=size, chunks=refs, files=files), key)
        parts: list[ChunkRef] = []
        if len(manifest_bytes) > BLOCK_LIMIT:
            # Too many chunks for one block: the root lists parts, each a manifest of a run of chunks.
            for i in range(0, len(refs), _PART_CHUNKS):
                run = refs[i : i + _PART_CHUNKS]
                part = Manifest(size=sum(c.size for c in run), chunks=run)
                part_cid, part_bytes = _encode_manifest(part, key)
                batch.append((part_cid, part_bytes))
                parts.append(ChunkRef(cid=part_cid, size=part.size))
            root = Manifest(kind=kind, size=size, chunks=[], parts=parts, files=files)
            manifest_cid, manifest_bytes = _encode_manifest(root, key)
        batch.append((manifest_cid, manifest_bytes))
        uploads.add(batch)
        placed = uploads.finish()
        policy_doc = policy.model_dump()
        with self._session() as s:
            block_cids = {r.cid for r in refs} | {p.cid for p in parts} | {manifest_cid}
            reused = block_cids - set(placed)
            still_there = {
                c
                for part in _batched(sorted(reused))
                for c in s.scalars(select(BlockRow.cid).where(BlockRow.cid.in_(part)))
            }
            if reused - still_there:
                raise Conflict(
                    "blocks this file shares were garbage-collected while it was stored; put it again", field="file"
                )
            insert_ignore(s, BlockRow, [{"cid": c, "size": n, "policy": policy_doc} for c, (n, _) in placed.items()])
            insert_ignore(s, FragmentRow, [f for _, frags in placed.values() for f in frags])
            insert_ignore(
                s,
                ManifestRow,
                [
                    {
                        "cid": manifest_cid,
                        "size": size,
                        "chunks": len(refs),
                        "private": private,
                        "policy": policy_doc,
                        "kind": kind,
                    }
                ],
            )
            insert_ignore(s, RefRow, [{"manifest_cid": manifest_cid, "block_cid": c} for c in sorted(block_cids)])
            row = s.get(FileRow, (owner, manifest_cid))
            if row is None:
                row = FileRow(owner=owner, cid=manifest_cid, name=name, private=private, pinned=True, public=public)
                s.add(row)
            else:
                # Storing the same bytes again never narrows who may read them; unpublish does.
                row.pinned, row.name, row.public = True, name or row.name, row.public or public
            s.flush()
            info = self._file_info(s, row, owner)
        return PutStats(
            file=info, new_blocks=len(placed), reused_blocks=uploads.reused, bytes_uploaded=uploads.uploaded
        )

    @staticmethod
    def _fragments(block_cid: str, data: bytes, policy: Replicas | Erasure) -> list[tuple[str, bytes]]:
        if isinstance(policy, Replicas):
            return [(block_cid, data)] * policy.copies
        return [(cids.cid_of(f), f) for f in erasure.encode(data, policy.k, policy.n)]

    def _place_block(
        self, block_cid: str, data: bytes, policy: Replicas | Erasure, active: list[tuple[str, float]]
    ) -> tuple[list[dict], int]:
        candidates = iter(placement.rank(block_cid, active))
        rows, uploaded = [], 0
        for idx, (fragment_cid, fragment) in enumerate(self._fragments(block_cid, data, policy)):
            node_id = self._put_somewhere(candidates, fragment_cid, fragment)
            if node_id is None:
                raise NotEnoughNodes(
                    f"block {block_cid}: only {idx} of {policy.width} fragments found a node that accepts them",
                    field="policy",
                )
            rows.append(
                {"block_cid": block_cid, "idx": idx, "fragment_cid": fragment_cid, "node_id": node_id, "healthy": True}
            )
            uploaded += len(fragment)
        return rows, uploaded

    def _put_somewhere(self, candidates: Iterator[str], fragment_cid: str, fragment: bytes) -> str | None:
        """Store on the first candidate that accepts; a full or unreachable node passes to the next."""
        for node_id in candidates:
            try:
                self._store(node_id).put(fragment_cid, fragment)
            except (StoreUnavailable, QuotaExceeded):
                continue
            return node_id
        return None

    # ---- get ---------------------------------------------------------------------------------

    def stat(self, cid: str, owner: str = "local") -> FileInfo:
        with self._session() as s:
            return self._file_info(s, self._visible_row(s, cid, owner), owner)

    def ls(self, owner: str = "local") -> list[FileInfo]:
        with self._session() as s:
            rows = s.scalars(select(FileRow).where(FileRow.owner == owner).order_by(FileRow.created_at))
            return [self._file_info(s, r, owner) for r in rows]

    def manifest(self, cid: str, owner: str = "local") -> Manifest:
        with self._session() as s:
            row = self._visible_row(s, cid, owner)
            stored_by = row.owner
        key = crypto.owner_key(self._secret, stored_by) if cids.codec_of(cid) == "raw" else b""
        root = self._decode_manifest(cid, key)
        if not root.parts:
            return root
        chunks = [c for part in root.parts for c in self._decode_manifest(part.cid, key).chunks]
        return root.model_copy(update={"chunks": chunks, "parts": []})

    def _decode_manifest(self, cid: str, key: bytes) -> Manifest:
        raw = self._read_block(cid)
        return Manifest.from_dag_json(crypto.open_manifest(key, raw) if key else raw)

    def open_range(self, cid: str, owner: str = "local", start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes [start, end) of a file, streamed chunk by chunk with blocks fetched ahead."""
        manifest = self.manifest(cid, owner)
        end = manifest.size if end is None else min(end, manifest.size)
        if start < 0 or start > end:
            raise StorageError(f"range {start}-{end} is outside the file's {manifest.size} bytes", field="range")
        key = crypto.owner_key(self._secret, owner) if any(c.digest for c in manifest.chunks) else b""
        wanted, offset = [], 0
        for chunk in manifest.chunks:
            if offset + chunk.size > start and offset < end:
                wanted.append((offset, chunk))
            offset += chunk.size
        return self._stream(wanted, start, end, key)

    def _stream(self, wanted: list[tuple[int, ChunkRef]], start: int, end: int, key: bytes) -> Iterator[bytes]:
        pending: deque[tuple[int, ChunkRef, Future]] = deque()
        items = iter(wanted)
        for offset, chunk in items:
            pending.append((offset, chunk, self._pool.submit(self._read_chunk, chunk, key)))
            if len(pending) >= _READ_AHEAD:
                break
        try:
            while pending:
                offset, chunk, future = pending.popleft()
                nxt = next(items, None)
                if nxt is not None:
                    pending.append((nxt[0], nxt[1], self._pool.submit(self._read_chunk, nxt[1], key)))
                data = future.result()
                yield data[max(0, start - offset) : end - offset]
        finally:
            for *_, future in pending:
                future.cancel()

    def _read_chunk(self, chunk: ChunkRef, key: bytes) -> bytes:
        data = self._read_block(chunk.cid)
        if chunk.digest is not None:
            data = crypto.open_chunk(key, bytes.fromhex(chunk.digest), data)
        if len(data) != chunk.size:
            raise DataLost(f"chunk {chunk.cid} decoded to {len(data)} bytes, expected {chunk.size}")
        return data

    def get_bytes(self, cid: str, owner: str = "local", start: int = 0, end: int | None = None) -> bytes:
        return b"".join(self.open_range(cid, owner, start, end))

    def get_file(
        self, cid: str, dest: str | os.PathLike, owner: str = "local", progress: Progress | None = None
    ) -> Path:
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                for part in self.open_range(cid, owner):
                    f.write(part)
                    if progress:
                        progress(len(part))
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return dest

    def _read_block(self, block_cid: str) -> bytes:
        """Fetch a block from its fragments, checking every piece against its CID."""
        with self._session() as s:
            block = s.get(BlockRow, block_cid)
            if block is None:
                raise DataLost(f"block {block_cid} is not in the catalog")
            rows = list(
                s.execute(
                    select(FragmentRow.idx, FragmentRow.fragment_cid, FragmentRow.node_id)
                    .join(NodeRow, NodeRow.id == FragmentRow.node_id)
                    .where(
                        FragmentRow.block_cid == block_cid, FragmentRow.healthy.is_(True), NodeRow.status == "active"
                    )
                    .order_by(FragmentRow.idx)
                )
            )
            policy, size = _policy_adapter.validate_python(block.policy), block.size
        need = policy.k if isinstance(policy, Erasure) else 1
        got: dict[int, bytes] = {}
        for idx, fragment_cid, node_id in rows:
            try:
                data = self._store(node_id).get(fragment_cid)
            except (StoreUnavailable, BlockMissing):
                continue
            if not cids.matches(fragment_cid, data):
                self._mark_unhealthy(block_cid, idx)
                continue
            got[idx] = data
            if len(got) >= need:
                break
        if len(got) < need:
            raise DataLost(f"block {block_cid}: {len(got)} of the {need} fragments it needs could be read")
        data = got[next(iter(got))] if isinstance(policy, Replicas) else erasure.decode(got, policy.k, policy.n, size)
        if not cids.matches(block_cid, data):
            raise DataLost(f"block {block_cid} decoded to bytes that do not match its CID")
        return data

    def _verifies_again(self, block_cid: str, idx: int, node_id: str, fragment_cid: str) -> bool:
        """Whether a copy marked bad now reads back whole (a node that sent wrong bytes once, a disk error since
        mended); one that does is marked healthy and kept rather than copied again."""
        try:
            data = self._store(node_id).get(fragment_cid)
        except (StoreUnavailable, BlockMissing):
            return False
        if not cids.matches(fragment_cid, data):
            return False
        with self._session() as s:
            s.execute(
                update(FragmentRow)
                .where(FragmentRow.block_cid == block_cid, FragmentRow.idx == idx, FragmentRow.node_id == node_id)
                .values(healthy=True)
            )
        return True

    def _mark_unhealthy(self, block_cid: str, idx: int) -> None:
        with self._session() as s:
            s.execute(
                update(FragmentRow)
                .where(FragmentRow.block_cid == block_cid, FragmentRow.idx == idx)
                .values(healthy=False)
            )

    # ---- ownership ---------------------------------------------------------------------------

    def _visible_row(self, s: Session, cid: str, owner: str) -> FileRow:
        """The caller's own entry for ``cid``, else one its owner made public; others' files are not found
        (whether someone else stored the same bytes is never revealed)."""
        try:
            cids.parse(cid)
        except cids.InvalidCID as exc:
            raise StorageError(str(exc), field="cid") from None
        row = s.get(FileRow, (owner, cid))
        if row is None:
            row = s.scalars(
                select(FileRow).where(FileRow.cid == cid, FileRow.public.is_(True), FileRow.private.is_(False)).limit(1)
            ).first()
        if row is None:
            raise NotFound(f"no file {cid}", field="cid")
        return row

    def _file_info(self, s: Session, row: FileRow, viewer: str) -> FileInfo:
        m = s.get(ManifestRow, row.cid)
        return FileInfo(
            cid=row.cid,
            owner=row.owner if row.owner == viewer else None,
            name=row.name,
            size=m.size,
            private=row.private,
            public=row.public,
            pinned=row.pinned,
            policy=_policy_adapter.validate_python(m.policy),
            chunks=m.chunks,
            kind=m.kind,
            created_at=row.created_at,
        )

    def pin(self, cid: str, owner: str = "local") -> FileInfo:
        """Keep a file: the caller's own, or a public one the caller wants kept under its account."""
        with self._session() as s:
            visible = self._visible_row(s, cid, owner)
            row = s.get(FileRow, (owner, cid))
            if row is None:
                row = FileRow(owner=owner, cid=cid, name=visible.name, private=False, pinned=True, public=False)
                s.add(row)
            row.pinned = True
            s.flush()
            return self._file_info(s, row, owner)

    def unpin(self, cid: str, owner: str = "local") -> FileInfo:
        """Let garbage collection take the file once no one else keeps it."""
        with self._session() as s:
            row = self._own_row(s, cid, owner)
            row.pinned = False
            return self._file_info(s, row, owner)

    def publish(self, cid: str, owner: str = "local", public: bool = True) -> FileInfo:
        """Let anyone who knows the CID read one of your files (``public=False`` takes that back)."""
        with self._session() as s:
            row = self._own_row(s, cid, owner)
            if public and row.private:
                raise StorageError("a private file is encrypted for its owner and cannot be public", field="cid")
            row.public = public
            return self._file_info(s, row, owner)

    def delete(self, cid: str, owner: str = "local") -> None:
        with self._session() as s:
            s.delete(self._own_row(s, cid, owner))
        self.gc()

    def _own_row(self, s: Session, cid: str, owner: str) -> FileRow:
        row = s.get(FileRow, (owner, cid))
        if row is None:
            self._visible_row(s, cid, owner)  # 404 unless the caller can at least see it
            raise Forbidden(f"file {cid} belongs to another account", field="cid")
        return row

    def gc(self) -> int:
        """Drop unpinned files and every block no kept file needs; returns the blocks freed."""
        with self._session() as s:
            s.execute(delete(FileRow).where(FileRow.pinned.is_(False)))
            kept = select(FileRow.cid)
            dead_manifests = list(s.scalars(select(ManifestRow.cid).where(ManifestRow.cid.not_in(kept))))
            for part in _batched(dead_manifests):
                s.execute(delete(RefRow).where(RefRow.manifest_cid.in_(part)))
                s.execute(delete(ManifestRow).where(ManifestRow.cid.in_(part)))
            dead_blocks = list(s.scalars(select(BlockRow.cid).where(BlockRow.cid.not_in(select(RefRow.block_cid)))))
            doomed: list[tuple[str, str]] = []
            for part in _batched(dead_blocks):
                doomed += list(
                    s.execute(
                        select(FragmentRow.node_id, FragmentRow.fragment_cid).where(FragmentRow.block_cid.in_(part))
                    )
                )
                s.execute(delete(FragmentRow).where(FragmentRow.block_cid.in_(part)))
                s.execute(delete(BlockRow).where(BlockRow.cid.in_(part)))
        # Catalog first: a node that misses a delete only keeps an orphan, never loses a live block.
        still_needed = self._assigned(doomed)
        for node_id, fragment_cid in doomed:
            if (node_id, fragment_cid) in still_needed:
                continue
            try:
                self._store(node_id).delete(fragment_cid)
            except StoreUnavailable:
                continue
        return len(dead_blocks)

    def _assigned(self, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Of (node, fragment cid) pairs, those some remaining block still keeps there (identical fragments)."""
        found: set[tuple[str, str]] = set()
        with self._session() as s:
            for part in _batched(sorted({f for _, f in pairs})):
                found |= set(
                    s.execute(
                        select(FragmentRow.node_id, FragmentRow.fragment_cid).where(FragmentRow.fragment_cid.in_(part))
                    )
                )
        return found

    # ---- integrity: audit and repair ----------------------------------------------------------

    def audit(self, sample: int | None = None, rng: random.Random | None = None) -> AuditReport:
        """Challenge nodes to hash a fresh nonce with fragments they should hold; the expected answer
        comes from the block rebuilt from its other fragments, so only the real bytes pass."""
        rng = rng or random.Random()
        with self._session() as s:
            rows = list(
                s.execute(
                    select(FragmentRow.block_cid, FragmentRow.idx, FragmentRow.fragment_cid, FragmentRow.node_id)
                    .join(NodeRow, NodeRow.id == FragmentRow.node_id)
                    .where(FragmentRow.healthy.is_(True), NodeRow.status == "active")
                    .order_by(FragmentRow.block_cid, FragmentRow.idx)
                )
            )
        if sample is not None and sample < len(rows):
            rows = rng.sample(rows, sample)
        by_block: dict[str, list] = {}
        for row in rows:
            by_block.setdefault(row[0], []).append(row)
        report = AuditReport(checked=0)
        for block_cid, fragments in by_block.items():
            try:
                expected = self._expected_fragments(block_cid)
            except DataLost:
                continue  # repair reports lost blocks; an audit can only judge what it can rebuild
            for _, idx, fragment_cid, node_id in fragments:
                nonce = os.urandom(16)
                report.checked += 1
                try:
                    answer = self._store(node_id).audit(fragment_cid, nonce)
                except StoreUnavailable:
                    self._set_status(node_id, "down")
                    continue
                except BlockMissing:
                    answer = None
                if answer != audit_answer(nonce, expected[idx]):
                    self._fail_audit(block_cid, idx, node_id)
                    report.failed.append({"block": block_cid, "fragment": idx, "node": node_id})
        return report

    def _expected_fragments(self, block_cid: str) -> list[bytes]:
        data = self._read_block(block_cid)
        with self._session() as s:
            policy = _policy_adapter.validate_python(s.get(BlockRow, block_cid).policy)
        return [f for _, f in self._fragments(block_cid, data, policy)]

    def _fail_audit(self, block_cid: str, idx: int, node_id: str) -> None:
        self._mark_unhealthy(block_cid, idx)
        with self._session() as s:
            node = s.get(NodeRow, node_id)
            node.audit_failures += 1
            if node.audit_failures >= self.settings.storage_max_audit_failures:
                node.status = "evicted"

    def redundancy(self) -> list[Redundancy]:
        """Healthy fragments on active nodes per block, against the block's target."""
        with self._session() as s:
            healthy = {
                cid: count
                for cid, count in s.execute(
                    select(FragmentRow.block_cid, func.count(func.distinct(FragmentRow.node_id)))
                    .join(NodeRow, NodeRow.id == FragmentRow.node_id)
                    .where(FragmentRow.healthy.is_(True), NodeRow.status == "active")
                    .group_by(FragmentRow.block_cid)
                )
            }
            return [
                Redundancy(block=cid, target=_policy_adapter.validate_python(policy).width, healthy=healthy.get(cid, 0))
                for cid, policy in s.execute(select(BlockRow.cid, BlockRow.policy))
            ]

    def maintain(self, audit_sample: int | None = 256) -> MaintenanceReport:
        """One round of upkeep: find nodes that went away or came back, audit a random sample of
        fragments, and rebuild whatever either found missing."""
        nodes = self.check_nodes()
        audit = self.audit(audit_sample)
        return MaintenanceReport(
            nodes_down=[n.id for n in nodes if n.status == "down"], audit=audit, repair=self.repair()
        )

    def repair(self) -> RepairReport:
        """Rebuild every fragment that is unhealthy or on a node that is not active, on other nodes; a copy marked
        unhealthy that verifies again where it is stays there."""
        active = self._active_nodes()
        active_ids = {n for n, _ in active}
        report = RepairReport(blocks_checked=0, fragments_rebuilt=0)
        with self._session() as s:
            blocks = list(s.execute(select(BlockRow.cid, BlockRow.policy)))
            fragments: dict[str, list[tuple[int, str, str, bool]]] = {}
            for block_cid, idx, node_id, fragment_cid, healthy in s.execute(
                select(
                    FragmentRow.block_cid,
                    FragmentRow.idx,
                    FragmentRow.node_id,
                    FragmentRow.fragment_cid,
                    FragmentRow.healthy,
                )
            ):
                fragments.setdefault(block_cid, []).append((idx, node_id, fragment_cid, healthy))
        for block_cid, policy_doc in blocks:
            report.blocks_checked += 1
            policy = _policy_adapter.validate_python(policy_doc)
            rows = fragments.get(block_cid, [])
            good = {idx: node for idx, node, _, healthy in rows if healthy and node in active_ids}
            for idx, node, fragment_cid, healthy in rows:
                if not healthy and node in active_ids and self._verifies_again(block_cid, idx, node, fragment_cid):
                    good[idx] = node
                    report.fragments_recovered += 1
            missing = [i for i in range(policy.width) if i not in good]
            if not missing:
                continue
            try:
                rebuilt = self._fragments(block_cid, self._read_block(block_cid), policy)
            except DataLost:
                report.lost.append(block_cid)
                continue
            candidates = iter(placement.choose(block_cid, active, len(active), exclude=list(good.values())))
            for idx in missing:
                fragment_cid, fragment = rebuilt[idx]
                node_id = self._put_somewhere(candidates, fragment_cid, fragment)
                if node_id is None:
                    report.degraded.append(block_cid)
                    break
                with self._session() as s:
                    row = s.get(FragmentRow, (block_cid, idx))
                    row.node_id, row.fragment_cid, row.healthy = node_id, fragment_cid, True
                report.fragments_rebuilt += 1
        return report


def _declared(store: RemoteBlockStore, url: str) -> tuple[int, float]:
    """The quota and price a node declares, asked with its credential: only the node holding it answers."""
    try:
        facts = store.info()
    except (StoreUnavailable, BlockMissing, QuotaExceeded):
        raise StorageError(f"no storage node answered at {url} with that credential", field="url") from None
    capacity, price = facts.get("capacity_bytes"), facts.get("price_per_gb_month", 0.0)
    if (
        not isinstance(capacity, int)
        or isinstance(capacity, bool)
        or not 0 < capacity <= _MAX_CAPACITY
        or not isinstance(price, int | float)
        or isinstance(price, bool)
        or not math.isfinite(price)
        or not 0 <= price <= _MAX_PRICE
    ):
        raise StorageError(f"the storage node at {url} declares an impossible quota or price", field="url")
    return capacity, float(price)


def _encode_manifest(manifest: Manifest, key: bytes) -> tuple[str, bytes]:
    """(CID, block) of a manifest: DAG-JSON in the clear, or sealed with the owner's key."""
    if key:
        sealed = crypto.seal_manifest(key, manifest.to_dag_json())
        return cids.cid_of(sealed, "raw"), sealed
    encoded = manifest.to_dag_json()
    return cids.cid_of(encoded, "dag-json"), encoded


class _Uploads:
    """The blocks one put places: placement runs in the pool while the caller cuts and hashes the next
    chunks, with at most _IN_FLIGHT blocks held in memory."""

    def __init__(self, storage: Storage, policy: Replicas | Erasure, active: list[tuple[str, float]]):
        self.storage, self.policy, self.active = storage, policy, active
        self.futures: dict[str, Future] = {}
        self.sizes: dict[str, int] = {}
        self.window: deque[Future] = deque()
        self.reused = 0
        self.uploaded = 0

    def add(self, batch: list[tuple[str, bytes]]) -> None:
        unique = {c: data for c, data in batch if c not in self.futures}
        with self.storage._session() as s:
            known = set(s.scalars(select(BlockRow.cid).where(BlockRow.cid.in_(list(unique)))))
        self.reused += len(batch) - len(unique) + len(known)
        for c, data in unique.items():
            if c in known:
                continue
            self.sizes[c] = len(data)
            self.futures[c] = self.storage._pool.submit(self.storage._place_block, c, data, self.policy, self.active)
            self.window.append(self.futures[c])
        while len(self.window) > _IN_FLIGHT:
            self.window.popleft().result()

    def finish(self) -> dict[str, tuple[int, list[dict]]]:
        """cid -> (size, fragment rows) of every block this put wrote."""
        placed = {}
        for c, future in self.futures.items():
            rows, uploaded = future.result()
            placed[c] = (self.sizes[c], rows)
            self.uploaded += uploaded
        return placed

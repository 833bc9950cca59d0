"""Putting files: content-defined chunks → (private: sealed on this side) → raw blocks addressed by CID →
each block placed on the nodes (see :mod:`stxrage.fragments`) → a manifest block naming the chunks, whose
CID is the file's id. The catalog is written in one transaction after the data is placed, so a failed put
leaves no half-written file behind.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select

from cxmpute.errors import Conflict
from stxrage import cid as cids
from stxrage import crypto
from stxrage.base import Progress
from stxrage.catalog import BlockRow, FileRow, FragmentRow, ManifestRow, RefRow, batched, insert_ignore
from stxrage.chunker import BLOCK_LIMIT, chunk_bytes, chunk_stream
from stxrage.errors import NotEnoughNodes, StorageError
from stxrage.fragments import Fragments
from stxrage.models import ChunkRef, Erasure, FileEntry, Manifest, PutStats, Replicas
from stxrage.ownership import Ownership

_BATCH = 32  # blocks checked against the catalog per query
_IN_FLIGHT = 64  # blocks being placed while the next chunks are cut and hashed
_PART_CHUNKS = 4096  # chunk entries per manifest part: well under 1 MiB even with private digests


class Writes(Ownership, Fragments):
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
                for part in batched(sorted(reused))
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

    def __init__(self, storage: Fragments, policy: Replicas | Erasure, active: list[tuple[str, float]]):
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

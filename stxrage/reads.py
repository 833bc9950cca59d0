"""Getting files back: the manifest (its parts joined, opened with the owner's key when private), then the
chunks a range needs, streamed in order with blocks fetched ahead of the reader, each checked on the way.
"""

from __future__ import annotations

import os
import tempfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

from sqlalchemy import select

from stxrage import cid as cids
from stxrage import crypto
from stxrage.base import Progress
from stxrage.catalog import FileRow
from stxrage.errors import DataLost, StorageError
from stxrage.fragments import Fragments
from stxrage.models import ChunkRef, FileInfo, Manifest
from stxrage.ownership import Ownership

_READ_AHEAD = 16  # blocks fetched ahead of the reader


class Reads(Ownership, Fragments):
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

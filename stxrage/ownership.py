"""Who may see and keep a file: each owner's entries in the catalog, pins, publishing, deleting, and the
garbage collection that frees the blocks no kept file needs.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cxmpute.errors import Forbidden, NotFound
from stxrage import cid as cids
from stxrage.blockstore import StoreUnavailable
from stxrage.catalog import BlockRow, FileRow, FragmentRow, ManifestRow, RefRow, batched
from stxrage.errors import StorageError
from stxrage.models import FileInfo, stored_policy
from stxrage.node_registry import NodeRegistry


class Ownership(NodeRegistry):
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
            policy=stored_policy(m.policy),
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
            for part in batched(dead_manifests):
                s.execute(delete(RefRow).where(RefRow.manifest_cid.in_(part)))
                s.execute(delete(ManifestRow).where(ManifestRow.cid.in_(part)))
            dead_blocks = list(s.scalars(select(BlockRow.cid).where(BlockRow.cid.not_in(select(RefRow.block_cid)))))
            doomed: list[tuple[str, str]] = []
            for part in batched(dead_blocks):
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
            for part in batched(sorted({f for _, f in pairs})):
                found |= set(
                    s.execute(
                        select(FragmentRow.node_id, FragmentRow.fragment_cid).where(FragmentRow.fragment_cid.in_(part))
                    )
                )
        return found

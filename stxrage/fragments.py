"""A block on the nodes: whole copies or erasure-coded fragments, each put on a node chosen by rendezvous
hashing, and read back with every fragment and the rebuilt block checked against its CID; bad copies are
marked and read around.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import select, update

from stxrage import cid as cids
from stxrage import erasure, placement
from stxrage.blockstore import BlockMissing, QuotaExceeded, StoreUnavailable
from stxrage.catalog import BlockRow, FragmentRow, NodeRow
from stxrage.errors import DataLost, NotEnoughNodes
from stxrage.models import Erasure, Replicas, stored_policy
from stxrage.node_registry import NodeRegistry


class Fragments(NodeRegistry):
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
            policy, size = stored_policy(block.policy), block.size
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

"""Keeping stored data whole: audits challenge nodes to prove they hold the fragments they should, repair
rebuilds whatever is lost or doubtful on other nodes, and maintenance runs both after a look at which nodes
went away or came back.
"""

from __future__ import annotations

import os
import random

from sqlalchemy import func, select

from stxrage import placement
from stxrage.blockstore import BlockMissing, StoreUnavailable, audit_answer
from stxrage.catalog import BlockRow, FragmentRow, NodeRow
from stxrage.errors import DataLost
from stxrage.fragments import Fragments
from stxrage.models import AuditReport, MaintenanceReport, NodeInfo, Redundancy, RepairReport, stored_policy


class Integrity(Fragments):
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
                    evicted = self._fail_audit(block_cid, idx, node_id)
                    report.failed.append({"block": block_cid, "fragment": idx, "node": node_id})
                    if evicted is not None:
                        report.evicted.append(evicted)
        return report

    def _expected_fragments(self, block_cid: str) -> list[bytes]:
        data = self._read_block(block_cid)
        with self._session() as s:
            policy = stored_policy(s.get(BlockRow, block_cid).policy)
        return [f for _, f in self._fragments(block_cid, data, policy)]

    def _fail_audit(self, block_cid: str, idx: int, node_id: str) -> NodeInfo | None:
        """Count a failed audit against the node; the node, if this failure evicted it."""
        self._mark_unhealthy(block_cid, idx)
        with self._session() as s:
            node = s.get(NodeRow, node_id, with_for_update=True)
            node.audit_failures += 1
            if node.status == "evicted" or node.audit_failures < self.settings.storage_max_audit_failures:
                return None
            node.status = "evicted"
            return self._node_info(node)

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
                Redundancy(block=cid, target=stored_policy(policy).width, healthy=healthy.get(cid, 0))
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
            policy = stored_policy(policy_doc)
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

"""Five storage nodes served for real: placement, node loss, corruption, audits, repair."""

from __future__ import annotations

import itertools
import os
import random

import pytest
from sqlalchemy import select

from cxmpute.errors import CxmputeError
from stxrage.catalog import FragmentRow
from stxrage.cid import cid_of
from stxrage.errors import DataLost
from stxrage.models import Erasure, Replicas
from tests.stxrage.conftest import PROVIDER


def fragments(storage, healthy: bool | None = None) -> list[FragmentRow]:
    with storage._session() as s:
        query = select(FragmentRow)
        if healthy is not None:
            query = query.where(FragmentRow.healthy.is_(healthy))
        return list(s.scalars(query))


def node_of(nodes, storage, node_id: str):
    url = next(n.url for n in storage.nodes() if n.id == node_id)
    return next(n for n in nodes if n.url == url)


def assert_full_redundancy(storage) -> None:
    short = [r for r in storage.redundancy() if r.healthy < r.target]
    assert not short, short[:3]


def test_nodes_register_with_their_provider_price_and_quota(cluster, nodes):
    infos = cluster.nodes()
    assert len(infos) == 5 and all(n.status == "active" for n in infos)
    assert {n.provider for n in infos} == {PROVIDER}  # the operator's word, never the node's
    assert all(n.price_per_gb_month == 0.5 and n.capacity_bytes == 2 * 1024**3 for n in infos)
    assert cluster.default_policy() == Replicas(copies=3)


@pytest.mark.parametrize("policy", [Replicas(copies=3), Erasure(k=3, n=5), Erasure(k=2, n=4)])
def test_each_block_spreads_over_distinct_nodes(cluster, policy):
    data = os.urandom(2 * 1024 * 1024)
    info = cluster.put_bytes(data, policy=policy).file
    by_block: dict[str, set[str]] = {}
    for row in fragments(cluster):
        by_block.setdefault(row.block_cid, set()).add(row.node_id)
    assert all(len(held) == policy.width for held in by_block.values())
    assert cluster.get_bytes(info.cid) == data
    assert_full_redundancy(cluster)


@pytest.mark.parametrize("policy", [Replicas(copies=3), Erasure(k=3, n=5)])
def test_any_tolerated_set_of_stopped_nodes_still_reads(cluster, nodes, policy):
    data = os.urandom(1536 * 1024)
    cid = cluster.put_bytes(data, policy=policy, private=True).file.cid
    for down in itertools.combinations(range(5), policy.tolerance):  # every set of two nodes
        for i in down:
            nodes[i].stop()
        assert cluster.get_bytes(cid) == data
        for i in down:
            nodes[i].start()


def test_losing_more_nodes_than_tolerated_fails_clearly(cluster, nodes):
    cid = cluster.put_bytes(os.urandom(400_000), policy=Erasure(k=3, n=5)).file.cid
    for i in (0, 1, 2):
        nodes[i].stop()
    with pytest.raises(DataLost):
        cluster.get_bytes(cid)


def test_corruption_is_detected_on_read_served_elsewhere_and_repaired(cluster, nodes):
    data = os.urandom(1024 * 1024)
    cid = cluster.put_bytes(data, policy=Replicas(copies=3)).file.cid
    victims = [r for r in fragments(cluster) if r.idx == 0]  # reads try copies in index order
    for victim in victims:
        node_of(nodes, cluster, victim.node_id).corrupt(victim.fragment_cid)
    assert cluster.get_bytes(cid) == data
    flagged = {(r.block_cid, r.idx) for r in fragments(cluster, healthy=False)}
    assert flagged == {(v.block_cid, 0) for v in victims}
    report = cluster.repair()
    assert report.fragments_rebuilt == len(victims) and not report.lost
    assert_full_redundancy(cluster)
    assert cluster.audit().failed == []
    assert cluster.get_bytes(cid) == data


def test_audit_catches_a_corrupt_erasure_fragment_and_repair_restores_it(cluster, nodes):
    data = os.urandom(2 * 1024 * 1024)
    cid = cluster.put_bytes(data, policy=Erasure(k=3, n=5)).file.cid
    rows = fragments(cluster)
    victim = rows[len(rows) // 2]
    node_of(nodes, cluster, victim.node_id).corrupt(victim.fragment_cid)
    report = cluster.audit()
    assert {"block": victim.block_cid, "fragment": victim.idx, "node": victim.node_id} in report.failed
    assert cluster.repair().fragments_rebuilt == 1
    assert_full_redundancy(cluster)
    assert cluster.audit().failed == []
    assert cluster.get_bytes(cid) == data


def test_a_lost_node_is_repaired_onto_the_others_and_swept_on_return(cluster, nodes):
    files = {cluster.put_bytes(d := os.urandom(800_000), policy=Replicas(copies=3)).file.cid: d for _ in range(3)}
    nodes[2].stop()
    statuses = {n.url: n.status for n in cluster.check_nodes()}
    assert statuses[nodes[2].url] == "down"
    report = cluster.repair()
    assert not report.lost and not report.degraded
    assert_full_redundancy(cluster)
    nodes[2].start()
    cluster.check_nodes()
    node_id = next(n.id for n in cluster.nodes() if n.url == nodes[2].url)
    assigned = {r.fragment_cid for r in fragments(cluster) if r.node_id == node_id}
    assert {p.name for p in nodes[2].files()} == assigned  # blocks moved away meanwhile were dropped
    for cid, data in files.items():
        assert cluster.get_bytes(cid) == data


def test_a_node_that_keeps_failing_audits_is_evicted(make_storage, nodes):
    storage = make_storage("strict", storage_max_audit_failures=2)
    for server in nodes:
        storage.add_node(server.url, credential=server.credential)
    storage.put_bytes(os.urandom(3 * 1024 * 1024), policy=Replicas(copies=3))
    target = fragments(storage)[0].node_id
    server = node_of(nodes, storage, target)
    for path in server.files():
        server.corrupt(path.name)
    storage.audit()
    assert next(n for n in storage.nodes() if n.id == target).status == "evicted"
    storage.repair()
    assert_full_redundancy(storage)
    assert all(r.node_id != target for r in fragments(storage))


def test_a_full_node_is_passed_over(make_storage, tmp_path):
    from tests.stxrage.conftest import NodeServer

    small = NodeServer(tmp_path / "small", quota_bytes=100_000)
    big = [NodeServer(tmp_path / f"big{i}") for i in range(3)]
    for server in [small, *big]:
        server.start()
    try:
        storage = make_storage("quota")
        for server in [small, *big]:
            storage.add_node(server.url, credential=server.credential)
        data = os.urandom(3 * 1024 * 1024)
        cid = storage.put_bytes(data, policy=Replicas(copies=3)).file.cid
        assert storage.get_bytes(cid) == data
        assert sum(p.stat().st_size for p in small.files()) <= 100_000
    finally:
        for server in [small, *big]:
            server.stop()


def test_twenty_randomized_fault_rounds_lose_nothing(cluster, nodes):
    rng = random.Random(20)
    policies = [Replicas(copies=3), Erasure(k=3, n=5), Erasure(k=2, n=4)]  # each tolerates two failures
    files: dict[str, tuple[str, bytes]] = {}
    for round_no in range(20):
        owner = rng.choice(["alice", "bob"])
        data = rng.randbytes(rng.choice([0, 1, 70_000, 300_000, 900_000]))
        info = cluster.put_bytes(data, owner=owner, private=rng.random() < 0.5, policy=rng.choice(policies)).file
        files[info.cid] = (owner, data)

        stopped = rng.sample(range(5), rng.choice([0, 1, 2]))
        for i in stopped:
            nodes[i].stop()
        # Corrupt up to (2 - stopped) fragments on running nodes, so no block loses more than it tolerates.
        running_ids = {n.id for n in cluster.nodes() if n.url not in {nodes[i].url for i in stopped}}
        candidates = [r for r in fragments(cluster, healthy=True) if r.node_id in running_ids]
        corrupted = rng.sample(candidates, min(len(candidates), 2 - len(stopped)))
        for row in corrupted:
            node_of(nodes, cluster, row.node_id).corrupt(row.fragment_cid)

        for cid, (who, expected) in files.items():
            assert cluster.get_bytes(cid, owner=who) == expected, f"round {round_no}: {cid} misread"
        cluster.audit()
        flagged = {(r.block_cid, r.idx) for r in fragments(cluster, healthy=False)}
        assert {(r.block_cid, r.idx) for r in corrupted} <= flagged, f"round {round_no}: corruption missed"

        cluster.check_nodes()
        assert not cluster.repair().lost
        for i in stopped:
            nodes[i].start()
        cluster.check_nodes()
        assert not cluster.repair().lost
        assert_full_redundancy(cluster)
    for cid, (who, expected) in files.items():
        assert cluster.get_bytes(cid, owner=who) == expected
    assert cluster.audit().failed == []


def test_maintenance_finds_a_dead_node_and_a_corrupt_fragment_and_restores_redundancy(cluster, nodes):
    data = os.urandom(1024 * 1024)
    cid = cluster.put_bytes(data, policy=Erasure(k=2, n=4)).file.cid
    victim = fragments(cluster)[0]
    holder = node_of(nodes, cluster, victim.node_id)
    others = [n for n in nodes if n is not holder]
    others[0].stop()
    holder.corrupt(victim.fragment_cid)
    report = cluster.maintain(audit_sample=None)
    assert len(report.nodes_down) == 1 and report.audit.failed and not report.repair.lost
    assert_full_redundancy(cluster)
    assert cluster.get_bytes(cid) == data


def test_a_url_answering_as_a_different_node_is_refused(cluster, nodes, tmp_path):
    import shutil

    old = nodes[0].credential
    nodes[0].stop()
    shutil.rmtree(nodes[0].root)  # the same address comes back as a fresh node with a new credential
    nodes[0].start()
    for credential in (nodes[0].credential, old):  # the new node's is another node's; the old one no longer works
        with pytest.raises(CxmputeError) as exc:
            cluster.add_node(nodes[0].url, credential=credential)
        assert exc.value.field == "url"


def test_repair_keeps_a_copy_marked_bad_that_reads_back_whole_again(cluster, nodes):
    """A node that once sent wrong bytes (here: a copy damaged, read, then mended on its disk) is checked again by
    repair and kept, not copied elsewhere; one still damaged is rebuilt."""
    data = os.urandom(50_000)  # under the smallest chunk: one block, these bytes
    cid = cluster.put_bytes(data, policy=Replicas(copies=3)).file.cid
    copies = [r for r in fragments(cluster) if r.block_cid == cid_of(data)]
    first, second = sorted(copies, key=lambda r: r.idx)[:2]  # reads try copies in index order
    originals = {}
    for victim in (first, second):
        node = node_of(nodes, cluster, victim.node_id)
        originals[victim.idx] = node.block_path(victim.fragment_cid).read_bytes()
        node.corrupt(victim.fragment_cid)
    assert cluster.get_bytes(cid) == data
    assert {r.idx for r in fragments(cluster, healthy=False)} == {first.idx, second.idx}
    node_of(nodes, cluster, first.node_id).block_path(first.fragment_cid).write_bytes(originals[first.idx])

    report = cluster.repair()
    assert (report.fragments_recovered, report.fragments_rebuilt, report.lost) == (1, 1, [])
    kept = next(r for r in fragments(cluster) if r.block_cid == first.block_cid and r.idx == first.idx)
    assert (kept.node_id, kept.healthy) == (first.node_id, True)
    assert_full_redundancy(cluster)
    assert cluster.get_bytes(cid) == data

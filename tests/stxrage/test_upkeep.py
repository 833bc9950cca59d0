"""The platform keeps storage redundancy up by itself: the upkeep the API's lifespan starts rebuilds a lost
node's blocks with no one calling repair, and of several platform replicas one at a time holds it."""

from __future__ import annotations

import asyncio
import os
import time

from cxmpute import loops
from cxmpute.settings import get_settings, reset_settings
from stxrage import upkeep
from stxrage.models import Replicas
from stxrage.upkeep import StorageUpkeep
from tests.stxrage.conftest import PROVIDER
from tests.stxrage.test_cluster import assert_full_redundancy, fragments, node_of


def _settings(tmp_path, **overrides):
    return get_settings().model_copy(
        update={
            "database_url": f"sqlite:///{tmp_path / 'platform.db'}",
            "storage_dir": tmp_path / "platform-stxrage",
            "storage_max_audit_failures": 10_000,
            **overrides,
        }
    )


def test_one_holder_at_a_time_renewing_until_it_lapses_or_is_given_up(platform_db_url):
    from cxmpute.db import migrate

    migrate(platform_db_url)
    now = time.time()
    assert upkeep.take(platform_db_url, "a", 10, now)
    assert not upkeep.take(platform_db_url, "b", 10, now + 1)  # a holds it
    assert upkeep.take(platform_db_url, "a", 10, now + 5)  # a renews: until now + 15
    assert not upkeep.take(platform_db_url, "b", 10, now + 14)
    assert upkeep.take(platform_db_url, "b", 10, now + 16)  # a went silent: b takes over
    assert not upkeep.take(platform_db_url, "a", 10, now + 17)
    upkeep.give_up(platform_db_url, "b")
    assert upkeep.take(platform_db_url, "a", 10, now + 18)  # given up: no wait for the lapse
    upkeep.give_up(platform_db_url, "b")  # not the holder: changes nothing
    assert not upkeep.take(platform_db_url, "b", 10, now + 19)


def test_a_lost_nodes_blocks_are_copied_again_without_anyone_asking(tmp_path, nodes):
    settings = _settings(tmp_path, storage_upkeep_s=0.2)
    service = StorageUpkeep(settings)
    store = service.storage()
    for server in nodes:
        store.add_node(server.url, credential=server.credential, provider=PROVIDER)
    data = os.urandom(3 * 1024 * 1024)
    cid = store.put_bytes(data, policy=Replicas(copies=3)).file.cid
    victim = node_of(nodes, store, fragments(store)[0].node_id)

    async def upkept() -> float:
        async with loops.running([service]):
            victim.stop()
            lost = time.monotonic()
            while True:  # bounded by the test's timeout
                short = [r for r in await asyncio.to_thread(store.redundancy) if r.healthy < r.target]
                if not short and service.last is not None and service.last.nodes_down:
                    return time.monotonic() - lost
                await asyncio.sleep(0.05)

    took = asyncio.run(upkept())
    assert_full_redundancy(store)
    down = [n for n in store.nodes() if n.status == "down"]
    assert [n.url for n in down] == [victim.url]
    assert all(f.node_id != down[0].id for f in fragments(store))
    assert store.get_bytes(cid) == data
    print(f"redundancy restored {took:.2f} s after the node stopped (rounds every 0.2 s)")


def test_of_two_platform_replicas_one_upkeeps_and_the_other_takes_over_when_it_stops(tmp_path, nodes):
    settings = _settings(tmp_path, storage_upkeep_s=0.1)
    first, second = StorageUpkeep(settings), StorageUpkeep(settings)
    store = first.storage()
    store.add_node(nodes[0].url, credential=nodes[0].credential, provider=PROVIDER)

    async def scenario() -> None:
        async with loops.running([first]):
            while not first.held:
                await asyncio.sleep(0.02)
            async with loops.running([second]):
                passes = second.passes
                while second.passes < passes + 5:
                    await asyncio.sleep(0.02)
                assert first.held and not second.held and second.last is None
            # second stopped without ever holding it; first still does
            assert first.held
        # first stopped and gave it up: a new replica takes it at once, not after the hold lapses
        third = StorageUpkeep(settings)
        async with loops.running([third]):
            while third.last is None:
                await asyncio.sleep(0.02)
            assert third.held

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_the_api_runs_the_upkeep_unless_it_is_off(monkeypatch):
    """The lifespan runs exactly ``background.services`` (tests/web/test_background.py)."""
    from web import background

    assert not any(isinstance(s, StorageUpkeep) for s in background.services(get_settings()))  # off in tests
    monkeypatch.setenv("CXMPUTE_STORAGE_UPKEEP_S", "30")
    reset_settings()
    try:
        assert any(isinstance(s, StorageUpkeep) for s in background.services(get_settings()))
    finally:
        monkeypatch.undo()
        reset_settings()


def test_a_node_evicted_for_failed_audits_costs_its_provider_a_slash_once(tmp_path, nodes):
    from compute.ledger import Acct, balance, post
    from compute.models import Provider
    from compute.store import get_store
    from web import background

    settings = _settings(tmp_path, storage_upkeep_s=0.2, storage_max_audit_failures=1, slash_bps=1000)
    service = next(s for s in background.services(settings) if isinstance(s, StorageUpkeep))
    store = service.storage()
    ledger = get_store(settings.resolved_database_url)
    with ledger.write() as s:
        s.add(Provider(address=PROVIDER, name="p", region="eu", profile={}, benchmark_score=0.0))
        s.flush()
        stake = [(Acct("chain", "test"), -(10**9)), (Acct("stake", PROVIDER), 10**9)]
        post(s, key="stake", kind="stake", entries=stake)
    for server in nodes:
        store.add_node(server.url, credential=server.credential, provider=PROVIDER)
    data = os.urandom(2 * 1024 * 1024)
    cid = store.put_bytes(data, policy=Replicas(copies=3)).file.cid
    cheat = node_of(nodes, store, fragments(store)[0].node_id)
    for path in cheat.files():  # it keeps answering, but no longer holds the bytes
        cheat.corrupt(path.name)

    async def upkept() -> None:
        async with loops.running([service]):
            while not any(n.status == "evicted" for n in await asyncio.to_thread(store.nodes)):
                await asyncio.sleep(0.05)
            for _ in range(5):  # later rounds find nothing more to punish
                passes = service.passes
                while service.passes == passes:
                    await asyncio.sleep(0.05)

    asyncio.run(asyncio.wait_for(upkept(), 120))
    evicted = [n for n in store.nodes() if n.status == "evicted"]
    assert [n.url for n in evicted] == [cheat.url]
    with ledger.read() as s:
        assert balance(s, Acct("stake", PROVIDER)) == 9 * 10**8  # 10% of the stake, once
        assert balance(s, Acct("fee", "platform")) == 10**8
    assert_full_redundancy(store)
    assert store.get_bytes(cid) == data

"""The market's index follows committed writes: nobody refreshes it by hand, and between its periodic syncs a
quote already sees a provision published, a lease ended, a provider gone silent or back."""

from __future__ import annotations

import pytest

from compute import provisions
from compute.market import leases
from compute.market.matching import Market
from compute.providers.registry import mark_down
from compute.provisions import ProvisionPatch
from cxmpute.db import get_engine
from tests.compute.market.test_placement import ONE_CORE, assert_index_matches_database, offer, provider, user


def test_the_index_sees_each_commit_before_its_next_sync(net):
    store = net.store
    market = Market(store, net.domain)
    p = provider(store)
    assert not market.quote(ONE_CORE).matched  # the first look loads the index
    synced = market._last_sync

    prov = offer(store, p, cpu=1)
    assert market.quote(ONE_CORE).provision_id == prov  # published: listed at once

    lease = market.place(user(store, 10**9), ONE_CORE)
    assert not market.quote(ONE_CORE).matched  # its one core is leased
    leases.end(store, lease.id, "completed", None)
    assert market.quote(ONE_CORE).provision_id == prov  # the lease's end gave it back

    with store.write() as session:
        mark_down(session, p)  # a bulk update: the ORM sees no row, the provider is marked instead
    assert not market.quote(ONE_CORE).matched
    provisions.update(store, p, prov, ProvisionPatch(status="active"))
    assert market.quote(ONE_CORE).provision_id == prov

    assert market._last_sync == synced  # none of it came from a periodic sync
    assert_index_matches_database(market, store)


def test_a_rolled_back_write_leaves_the_index_alone(net):
    store = net.store
    market = Market(store, net.domain)
    p = provider(store)
    prov = offer(store, p, cpu=1)
    assert market.quote(ONE_CORE).provision_id == prov
    with pytest.raises(RuntimeError), store.write() as session:
        mark_down(session, p)
        raise RuntimeError("the request failed after the update")
    assert market.quote(ONE_CORE).provision_id == prov
    assert_index_matches_database(market, store)


def test_the_reload_waits_for_the_writer_to_give_its_connection_back(net, monkeypatch):
    """A writer that reloaded while holding its connection would need two at once: enough writers together
    would empty the pool and wait on each other."""
    store = net.store
    market = Market(store, net.domain)
    p = provider(store)
    market.quote(ONE_CORE)
    engine = get_engine(store.url)
    held: list[int] = []
    real = market.refresh

    def refresh(provision_id: str) -> None:
        held.append(engine.pool.checkedout())
        real(provision_id)

    monkeypatch.setattr(market, "refresh", refresh)
    offer(store, p, cpu=1)
    assert held == [0]

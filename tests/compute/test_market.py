"""Matching, explanations, rentals, expiry, out-of-funds and slashing at the service level."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from eth_account import Account

from compute import provisions
from compute.errors import InsufficientFunds
from compute.ledger import Acct, balance, post, total
from compute.market import leases
from compute.market.demand import MatchRequest
from compute.market.leases import UsageIn
from compute.market.matching import Market, NoMatchError
from compute.models import Lease, Provider, utcnow
from compute.provisions import ProvisionPatch, ProvisionSpec, Resources
from cxmpute.errors import Forbidden
from cxmpute.settings import get_settings


@pytest.fixture
def market(net):
    return Market(net.store, net.domain)


def provider(store, reputation: float = 0.5, stake: int = 10**10) -> str:
    address = Account.create().address
    with store.write() as s:
        s.add(
            Provider(
                address=address,
                name="p",
                region="eu",
                profile={},
                benchmark_score=1.0,
                registered_at=utcnow(),
                last_heartbeat_ts=0,
                heartbeats=0,
                leases_completed=0,
                leases_failed=0,
                reputation=reputation,
            )
        )
        s.flush()
        post(
            s,
            key=f"stake-{address}",
            kind="stake",
            entries=[(Acct("chain", "t"), -stake), (Acct("stake", address), stake)],
        )
    return address


def user(store, gwei: int) -> str:
    address = Account.create().address
    with store.write() as s:
        post(
            s,
            key=f"dep-{address}",
            kind="deposit",
            entries=[(Acct("chain", "t"), -gwei), (Acct("user", address), gwei)],
        )
    return address


def offer(store, owner: str, price: int, **kw) -> str:
    spec = {
        "kind": "inference",
        "price_gwei": price,
        "resources": Resources(cpu=4, memory_mb=16384),
        "region": "eu",
        **kw,
    }
    return provisions.create(store, owner, ProvisionSpec(**spec)).id


def test_ranking_is_price_then_reputation(net, market):
    low_rep, high_rep = provider(net.store, 0.2), provider(net.store, 0.9)
    offer(net.store, low_rep, 100, models=["m"])
    best = offer(net.store, high_rep, 100, models=["m"])
    offer(net.store, high_rep, 90, models=["other"])
    q = market.quote(MatchRequest(kind="inference", model="m", price_max_gwei=150, duration_s=10))
    assert q.matched and q.provision_id == best and q.price_gwei == 100


def test_avoided_providers_are_passed_over_and_named_when_nothing_else_fits(net, market):
    cheap, dear = provider(net.store), provider(net.store)
    offer(net.store, cheap, 10)
    other = offer(net.store, dear, 20)
    req = MatchRequest(kind="inference", price_max_gwei=50, duration_s=10, avoid_providers=[cheap])
    assert market.quote(req).provision_id == other
    owner = user(net.store, 10**12)
    assert market.place(owner, req).provider == dear
    with pytest.raises(NoMatchError) as caught:
        market.place(owner, req.model_copy(update={"avoid_providers": [cheap, dear]}))
    assert caught.value.explanation.excluded == {"avoided": 2}


def test_no_match_says_why_and_what_price_would_match(net, market):
    p = provider(net.store)
    offer(net.store, p, 300, models=["llama"])
    offer(net.store, p, 250, models=["llama"], region="us")
    offer(net.store, p, 100, models=["mistral"])
    req = MatchRequest(kind="inference", model="llama", region="eu", price_max_gwei=200, duration_s=60)
    q = market.quote(req)
    assert not q.matched
    assert q.no_match.excluded == {"model": 1, "region": 1, "price_above_max": 1}
    assert q.no_match.lowest_matching_price_gwei == 300
    assert "300 gwei/CU-s" in q.no_match.message
    u = user(net.store, 10**9)
    with pytest.raises(NoMatchError) as info:
        market.place(u, req)
    assert info.value.status_code == 409 and info.value.explanation.lowest_matching_price_gwei == 300


def test_two_requests_never_share_capacity(net, market):
    p = provider(net.store)
    offer(net.store, p, 100)
    users = [user(net.store, 10**9) for _ in range(2)]
    req = MatchRequest(kind="inference", resources=Resources(cpu=3, memory_mb=4096), price_max_gwei=100, duration_s=10)
    other = Market(net.store, net.domain)  # a second process's view: its own index, same database
    market.place(users[0], req)
    with pytest.raises(NoMatchError):
        other.place(users[1], req)  # its stale index proposes the provision; the database refuses


def test_metering_is_capped_by_the_escrowed_duration(net, market):
    p = provider(net.store)
    offer(net.store, p, 10)
    units = 1 + 1
    u = user(net.store, 10 * units * 100)
    lease = market.place(
        u, MatchRequest(kind="inference", resources=Resources(cpu=1, memory_mb=1024), price_max_gwei=10, duration_s=100)
    )
    with pytest.raises(InsufficientFunds):
        market.place(u, MatchRequest(kind="inference", price_max_gwei=10, duration_s=1))
    used = leases.meter(net.store, net.domain, lease.id, UsageIn(seconds=500, idempotency_key="a"), p)
    assert used.seconds == 100 and used.lease.status == "active"  # capped at the lease's duration
    with pytest.raises(Forbidden):
        market.end(lease.id, "completed", u)  # only the provider completes; the user may cancel
    done = market.end(lease.id, "completed", p)
    assert done.end_reason == "completed" and done.paid_gwei == 10 * units * 100
    with net.store.read() as s:
        assert balance(s, Acct("user", u)) == 0 and total(s) == 0


def test_provider_lost_slashes_stake_to_the_user_and_hurts_reputation(net, market):
    p = provider(net.store, stake=10**10)
    offer(net.store, p, 10)
    u = user(net.store, 10**8)
    lease = market.place(u, MatchRequest(kind="inference", price_max_gwei=10, duration_s=50))
    ended = market.end(lease.id, "provider-lost", None)
    assert ended.end_reason == "provider-lost"
    slashed = 10**10 * get_settings().slash_bps // 10_000
    with net.store.read() as s:
        assert balance(s, Acct("stake", p)) == 10**10 - slashed
        assert balance(s, Acct("user", u)) == 10**8 + slashed  # full refund plus compensation
        prov = s.get(Provider, p)
        assert prov.leases_failed == 1 and prov.reputation < 0.5
        assert total(s) == 0


def test_rental_billed_upfront_renews_then_runs_out(net, market):
    p = provider(net.store)
    offer(net.store, p, 1)
    units = 1 + 1
    hour = units * 3600
    u = user(net.store, hour * 2 + 5)
    lease = market.place(
        u,
        MatchRequest(
            kind="inference", resources=Resources(cpu=1, memory_mb=1024), price_max_gwei=1, term="hour", auto_renew=True
        ),
    )
    assert lease.term == "hour" and lease.paid_gwei == hour and lease.escrow_gwei == 0
    fee = hour * get_settings().platform_fee_bps // 10_000
    with net.store.read() as s:
        assert balance(s, Acct("earnings", p)) == hour - fee and balance(s, Acct("fee", "platform")) == fee
    later = utcnow() + timedelta(hours=1, seconds=1)
    assert leases.expire_due(net.store, net.domain, later) == [lease.id]  # renewed for a second hour
    with net.store.read() as s:
        row = s.get(Lease, lease.id)
        assert row.status == "active" and row.renewals == 1 and row.paid_gwei == 2 * hour
    leases.expire_due(net.store, net.domain, later + timedelta(hours=1))  # cannot pay a third hour
    with net.store.read() as s:
        row = s.get(Lease, lease.id)
        assert row.status == "ended" and row.end_reason == "out-of-funds"
        assert balance(s, Acct("user", u)) == 5 and total(s) == 0


def test_per_second_lease_expires_and_refunds(net, market):
    p = provider(net.store)
    prov = offer(net.store, p, 2)
    u = user(net.store, 10**6)
    lease = market.place(u, MatchRequest(kind="inference", price_max_gwei=5, duration_s=30))
    leases.meter(net.store, net.domain, lease.id, UsageIn(seconds=10, idempotency_key="x"), p)
    leases.expire_due(net.store, net.domain, utcnow() + timedelta(seconds=31))
    with net.store.read() as s:
        row = s.get(Lease, lease.id)
        assert row.end_reason == "expired" and balance(s, Acct("escrow", lease.id)) == 0
        assert balance(s, Acct("user", u)) == 10**6 - 2 * row.compute_units * 10
    assert provisions.get(net.store, prov).free.cpu == 4


def test_paused_and_repriced_provisions_are_respected(net, market):
    p = provider(net.store)
    prov = offer(net.store, p, 100)
    req = MatchRequest(kind="inference", price_max_gwei=100, duration_s=10)
    provisions.update(net.store, p, prov, ProvisionPatch(price_gwei=150))
    market.refresh(prov)
    assert not market.quote(req).matched
    provisions.update(net.store, p, prov, ProvisionPatch(price_gwei=80, status="paused"))
    market.refresh(prov)
    assert market.quote(req).no_match.excluded == {"status": 1}
    provisions.update(net.store, p, prov, ProvisionPatch(status="active"))
    market.refresh(prov)
    assert market.quote(req).price_gwei == 80


def test_a_market_busy_only_with_the_wanted_kind_says_waiting_may_help(net, market):
    """Provisions of other kinds never make a busy market look hopeless (a provider offers several kinds)."""
    p = provider(net.store)
    offer(net.store, p, 10)
    offer(net.store, p, 10, kind="agent")
    u = user(net.store, 10**8)
    whole = MatchRequest(kind="inference", resources=Resources(cpu=4, memory_mb=1024), price_max_gwei=10, duration_s=60)
    market.place(u, whole)
    busy = market.quote(whole).no_match
    assert busy.excluded == {"kind": 1, "capacity": 1} and busy.busy
    too_big = market.quote(whole.model_copy(update={"resources": Resources(cpu=64)})).no_match
    assert not too_big.busy
    elsewhere = market.quote(whole.model_copy(update={"region": "us"})).no_match
    assert not elsewhere.busy
    assert not market.quote(whole.model_copy(update={"kind": "vm"})).no_match.busy


def test_offers_of_one_machine_share_its_capacity(net, market):
    """A provider offering its 4 cores as agent and container work sells 4 cores in all, never 8."""
    p, u = provider(net.store), user(net.store, 10**9)
    agent = offer(net.store, p, 10, kind="agent")
    container = provisions.create(
        net.store,
        p,
        ProvisionSpec(
            kind="container",
            price_gwei=10,
            resources=Resources(cpu=4, memory_mb=16384),
            region="eu",
            shares_capacity_with=agent,
        ),
    )
    assert container.capacity_group == provisions.get(net.store, agent).capacity_group == agent

    def req(kind: str, cpu: int) -> MatchRequest:
        return MatchRequest(kind=kind, resources=Resources(cpu=cpu, memory_mb=1024), price_max_gwei=10, duration_s=60)

    first = market.place(u, req("agent", 3))
    assert provisions.get(net.store, container.id).free.cpu == 1
    refused = market.quote(req("container", 2)).no_match
    assert refused.excluded == {"kind": 1, "capacity": 1} and refused.busy
    second = market.place(u, req("container", 1))
    assert second.provision_id == container.id
    assert not market.quote(req("agent", 1)).matched  # the machine is full, whichever offer is asked
    market.end(first.id, "user-cancelled", u)
    assert [provisions.get(net.store, i).free.cpu for i in (agent, container.id)] == [3, 3]
    assert market.place(u, req("agent", 3)).provision_id == agent
    # A fresh market (another API process) reads the same shared state from the database.
    assert not Market(net.store, net.domain).quote(req("container", 1)).matched


def test_concurrent_placements_on_a_shared_machine_never_oversell_it(net):
    """Eight requests for one core each, on two offers of one 4-core machine, from as many markets at once
    (as if from separate API processes): four get a core, the others no match, and nothing deadlocks."""
    from concurrent.futures import ThreadPoolExecutor

    p, u = provider(net.store), user(net.store, 10**9)
    agent = offer(net.store, p, 10, kind="agent")
    container = provisions.create(
        net.store,
        p,
        ProvisionSpec(
            kind="container",
            price_gwei=10,
            resources=Resources(cpu=4, memory_mb=16384),
            region="eu",
            shares_capacity_with=agent,
        ),
    ).id

    def place(n: int):
        req = MatchRequest(
            kind="agent" if n % 2 else "container",
            resources=Resources(cpu=1, memory_mb=512),
            price_max_gwei=10,
            duration_s=60,
        )
        try:
            return Market(net.store, net.domain).place(u, req)
        except NoMatchError:
            return None

    with ThreadPoolExecutor(8) as pool:
        placed = [lease for lease in pool.map(place, range(8)) if lease is not None]
    assert len(placed) == 4
    assert [provisions.get(net.store, i).free.cpu for i in (agent, container)] == [0, 0]
    market = Market(net.store, net.domain)
    for lease in placed:
        market.end(lease.id, "user-cancelled", u)
    assert [provisions.get(net.store, i).free.cpu for i in (agent, container)] == [4, 4]


def test_sharing_capacity_needs_your_own_live_provision_of_equal_resources(net, market):
    p, other = provider(net.store), provider(net.store)
    mine, theirs = offer(net.store, p, 10), offer(net.store, other, 10)

    def share(with_id: str, cpu: int = 4):
        return provisions.create(
            net.store,
            p,
            ProvisionSpec(
                kind="container",
                price_gwei=10,
                resources=Resources(cpu=cpu, memory_mb=16384),
                region="eu",
                shares_capacity_with=with_id,
            ),
        )

    for with_id, cpu, field in [
        (theirs, 4, "shares_capacity_with"),
        ("no-such-id", 4, "shares_capacity_with"),
        (mine, 2, "resources"),
    ]:
        with pytest.raises(Exception) as refused:
            share(with_id, cpu)
        assert refused.value.field == field and 400 <= refused.value.status_code < 500
    provisions.retire(net.store, p, mine)
    with pytest.raises(Exception) as refused:
        share(mine)
    assert refused.value.field == "shares_capacity_with" and refused.value.status_code == 409
    assert [x.kind for x in provisions.list_for(net.store, p)] == ["inference"]


def test_sweep_ends_leases_of_providers_whose_heartbeats_stopped(net, market):
    silent, never = provider(net.store), provider(net.store)
    for p in (silent, never):
        offer(net.store, p, 10)
    u = user(net.store, 10**8)
    req = MatchRequest(kind="inference", resources=Resources(cpu=4, memory_mb=1024), price_max_gwei=10, duration_s=600)
    first, second = market.place(u, req), market.place(u, req)
    with net.store.write() as s:
        s.get(Provider, silent).last_heartbeat_ts = int(utcnow().timestamp()) - 3600
    report = market.sweep()
    lost = first if first.provider == silent else second
    assert report.lost == [lost.id] and report.expired == []
    assert leases.get(net.store, lost.id, u).end_reason == "provider-lost"
    other = second if lost is first else first
    assert leases.get(net.store, other.id, u).status == "active"  # no heartbeats yet: not judged by them


def test_the_api_sweeps_expired_leases_while_it_runs(net, market, monkeypatch):
    from fastapi.testclient import TestClient

    from compute.market.sweeper import LeaseSweeper
    from web.app import create_app

    monkeypatch.setattr(LeaseSweeper, "every_s", 0.1)
    p = provider(net.store)
    offer(net.store, p, 1)
    u = user(net.store, 10**6)
    lease = market.place(u, MatchRequest(kind="inference", price_max_gwei=1, duration_s=1))
    with TestClient(create_app()):
        for _ in range(100):
            if leases.get(net.store, lease.id, u).status == "ended":
                break
            time.sleep(0.1)
    ended = leases.get(net.store, lease.id, u)
    assert ended.end_reason == "expired" and ended.escrow_left_gwei == 0


def test_provisions_published_through_another_process_are_picked_up(net, market):
    p = provider(net.store)
    req = MatchRequest(kind="inference", price_max_gwei=100, duration_s=10)
    assert not market.quote(req).matched  # loads the (empty) market
    elsewhere = offer(net.store, p, 70)  # written by another API process: this index was not told
    market.sync(force=True)
    assert market.quote(req).provision_id == elsewhere

"""Property tests: the ledger and the matcher under random, concurrent operation sequences.

Each example runs its operations in several threads at once against the real database (SQLite and
PostgreSQL), then checks the invariants: every transaction balances (the books sum to zero), no
platform balance is negative, each usage key is settled once, escrow is conserved per lease, and no
provision's capacity is over-reserved. ``CXMPUTE_PROPERTY_EXAMPLES`` runs more examples (default 15).
"""

from __future__ import annotations

import math
import os
import random
import threading
import time

from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from compute import provisions
from compute.ledger import Acct, balance, post, total
from compute.market import leases
from compute.market.demand import MatchRequest
from compute.market.index import ProvisionIndex, Slot
from compute.market.leases import UsageIn
from compute.market.matching import Market
from compute.models import Lease, LedgerAccount, LedgerTx, Provider, Provision, UsageRecord, utcnow
from compute.provisions import ProvisionSpec, Resources
from cxmpute.errors import CxmputeError

LANES = 3

request_op = st.tuples(
    st.just("request"), st.integers(0, 2), st.integers(1, 3), st.integers(50, 400), st.integers(1, 120)
)
op = st.one_of(
    request_op,
    request_op,
    st.tuples(st.just("meter"), st.integers(0, 20), st.integers(1, 90), st.integers(0, 4)),
    st.tuples(st.just("end"), st.integers(0, 20), st.sampled_from(["user-cancelled", "completed", "provider-lost"])),
    st.tuples(
        st.just("expire"),
    ),
)


def _provider(store) -> str:
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
                reputation=0.5,
            )
        )
        s.flush()
        # Stake arrives from the chain account exactly as a verified Staked event would post it.
        post(
            s,
            key=f"stake-{address}",
            kind="stake",
            entries=[(Acct("chain", "test"), -(10**10)), (Acct("stake", address), 10**10)],
        )
    return address


def _user(store, gwei: int) -> str:
    address = Account.create().address
    with store.write() as s:
        post(
            s,
            key=f"deposit-{address}",
            kind="deposit",
            entries=[(Acct("chain", "test"), -gwei), (Acct("user", address), gwei)],
        )
    return address


@settings(
    max_examples=int(os.environ.get("CXMPUTE_PROPERTY_EXAMPLES", 15)),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=st.lists(op, min_size=6, max_size=40),
    capacities=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    funds=st.lists(st.integers(20_000, 400_000), min_size=3, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_ledger_and_matcher_invariants_under_concurrency(net, ops, capacities, funds, seed):
    store = net.store
    market = Market(store, net.domain)  # a fresh index per example; the database is shared
    prov = [_provider(store) for _ in range(2)]
    for i, cpu in enumerate(capacities):
        provisions.create(
            store,
            prov[i % 2],
            ProvisionSpec(kind="function", price_gwei=100 + 25 * i, resources=Resources(cpu=cpu, memory_mb=cpu * 4096)),
        )
    users = [_user(store, gwei) for gwei in funds]
    opened: list[str] = []
    lock = threading.Lock()
    failures: list[BaseException] = []

    def run(lane_ops) -> None:
        rng = random.Random(seed)
        for item in lane_ops:
            try:
                if item[0] == "request":
                    _, u, cpu, price_max, duration = item
                    lease = market.place(
                        users[u],
                        MatchRequest(
                            kind="function",
                            price_max_gwei=price_max,
                            duration_s=duration,
                            resources=Resources(cpu=cpu, memory_mb=1024),
                        ),
                    )
                    with lock:
                        opened.append(lease.id)
                elif item[0] == "expire":
                    market.sweep()
                elif opened:
                    lease_id = opened[item[1] % len(opened)]
                    with store.read() as s:
                        row = s.get(Lease, lease_id)
                        user, provider = row.user, row.provider
                    if item[0] == "meter":
                        leases.meter(
                            store,
                            net.domain,
                            lease_id,
                            UsageIn(seconds=item[2], idempotency_key=f"k{item[3]}"),
                            provider,
                        )
                    else:
                        market.end(lease_id, item[2], user if item[2] == "user-cancelled" else provider)
                time.sleep(rng.random() / 1000)
            except CxmputeError:  # refusals (no match, out of funds, ended lease) are legitimate outcomes
                pass
            except BaseException as exc:  # anything else is a bug the test must surface
                failures.append(exc)

    threads = [threading.Thread(target=run, args=(ops[i::LANES],)) for i in range(LANES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures

    with store.read() as s:
        assert total(s) == 0
        assert (
            s.scalar(
                select(func.count())
                .select_from(LedgerAccount)
                .where(LedgerAccount.kind != "chain", LedgerAccount.balance < 0)
            )
            == 0
        )
        # Each usage record settled exactly once, and only through its own key.
        assert s.scalar(select(func.count()).select_from(UsageRecord).where(UsageRecord.amount_gwei > 0)) == s.scalar(
            select(func.count()).select_from(LedgerTx).where(LedgerTx.kind == "usage")
        )
        for lease_id in opened:
            row = s.get(Lease, lease_id)
            usage = s.scalar(
                select(func.coalesce(func.sum(UsageRecord.amount_gwei), 0)).where(UsageRecord.lease_id == lease_id)
            )
            refund = s.scalar(
                select(func.count()).select_from(LedgerTx).where(LedgerTx.idempotency_key == f"refund:{lease_id}")
            )
            left = balance(s, Acct("escrow", lease_id))
            assert usage == row.paid_gwei and row.metered_s <= row.duration_s
            if row.status == "ended":
                assert left == 0
            else:
                assert left == row.escrow_gwei - usage and not refund
        for p in s.scalars(select(Provision).where(Provision.provider.in_(prov))):
            active = s.scalars(select(Lease).where(Lease.provision_id == p.id, Lease.status == "active")).all()
            assert p.free_cpu >= 0 and p.cpu - p.free_cpu == sum(lease.cpu for lease in active)
            assert p.memory_mb - p.free_memory_mb == sum(lease.memory_mb for lease in active)
            # The index never offers capacity the database does not have (metering that ends a lease frees
            # capacity it learns of at the next sync).
            slot = market.index.get(p.id)  # a provision the index does not hold yet offers nothing
            assert slot is None or (slot.free_cpu <= p.free_cpu and slot.free_memory_mb <= p.free_memory_mb)
        for address in users:
            assert balance(s, Acct("user", address)) >= 0


slot_st = st.builds(
    lambda i, kind, cpu, price, rep, gpu, region, until: Slot(
        id=f"p{i:04d}",
        provider="0x" + "00" * 20,
        kind=kind,
        cpu=cpu,
        memory_mb=cpu * 4096,
        gpu_count=2 if gpu else 0,
        gpu_model=gpu,
        disk_gb=100,
        free_cpu=cpu,
        free_memory_mb=cpu * 4096,
        free_gpu=2 if gpu else 0,
        free_disk_gb=100,
        price=price,
        reputation=rep,
        region=region,
        available_until=until,
    ),
    st.integers(0, 9999),
    st.sampled_from(["vm", "function"]),
    st.integers(1, 8),
    st.integers(1, 50),
    st.sampled_from([0.1, 0.5, 0.9]),
    st.sampled_from(["", "", "A100", "L4"]),
    st.sampled_from(["eu", "us"]),
    st.sampled_from([math.inf, 1.5e9 + 1e6, 1.5e9 + 1e3]),
)
request_st = st.builds(
    lambda kind, cpu, gpu, model, lo, width, region, duration: MatchRequest(
        kind=kind,
        resources=Resources(cpu=cpu, memory_mb=cpu * 2048, gpu_count=1 if gpu else 0, gpu_model=model if gpu else ""),
        region=region,
        price_min_gwei=lo,
        price_max_gwei=lo + width,
        duration_s=duration,
    ),
    st.sampled_from(["vm", "function"]),
    st.integers(1, 8),
    st.booleans(),
    st.sampled_from(["", "A100"]),
    st.integers(0, 30),
    st.integers(1, 40),
    st.sampled_from([None, "eu"]),
    st.integers(1, 10**7),
)


@settings(max_examples=200, deadline=None)
@given(
    slots=st.lists(slot_st, max_size=40, unique_by=lambda s: s.id),
    steps=st.lists(
        st.tuples(st.sampled_from(["place", "release", "reprice", "pause"]), request_st, st.integers(0, 100)),
        max_size=40,
    ),
)
def test_index_agrees_with_a_linear_scan(slots, steps):
    """Whatever the sequence of placements, releases, price and status changes, the index's answer is
    exactly the best-ranked provision a full scan finds."""
    index = ProvisionIndex()
    for slot in slots:
        index.upsert(slot)
    placed: list[tuple[str, Resources]] = []
    now = 1.5e9
    for action, req, n in steps:
        if action == "place":
            fast = index.best(req, now)
            slow, why = index.scan(req, now)
            assert (fast.key if fast else None) == (slow.key if slow else None)
            if fast is None:
                assert sum(why.excluded.values()) == len(slots)
            else:
                index.reserve(fast.id, req.resources)
                placed.append((fast.id, req.resources))
        elif action == "release" and placed:
            slot_id, res = placed.pop(n % len(placed))
            index.release(slot_id, res)
        elif slots:
            slot = index.get(slots[n % len(slots)].id)
            changed = Slot(**{f: getattr(slot, f) for f in Slot.__slots__})
            if action == "reprice":
                changed.price = 1 + n % 50
            else:
                changed.status = "paused" if slot.status == "active" else "active"
            index.upsert(changed)
    for slot in slots:
        s = index.get(slot.id)
        assert 0 <= s.free_cpu <= s.cpu and 0 <= s.free_gpu <= s.gpu_count

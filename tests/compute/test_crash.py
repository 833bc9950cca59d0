"""A process killed between any two steps of a money-moving operation leaves the stored state as it was.

The child process runs the operation with one of its internal steps replaced by "do the step, then
``os._exit``" — a hard crash with the database transaction open — and the parent checks that nothing
changed and that the operation then succeeds once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from eth_account import Account
from sqlalchemy import func, select

from compute import provisions
from compute.ledger import Acct, post, total
from compute.market.demand import MatchRequest
from compute.market.leases import UsageIn, meter
from compute.market.matching import Market
from compute.models import Lease, LedgerAccount, LedgerTx, Provider, Provision, UsageRecord, utcnow
from compute.provisions import ProvisionSpec, Resources

REQUEST = MatchRequest(kind="vm", price_max_gwei=500, duration_s=100, resources=Resources(cpu=2, memory_mb=2048))

CHILD = textwrap.dedent("""
    import importlib, json, os, sys
    args = json.loads(sys.argv[1])
    module = importlib.import_module(args["module"])
    real = getattr(module, args["attr"])
    def crash(*a, **k):
        real(*a, **k)
        os._exit(17)
    setattr(module, args["attr"], crash)
    from compute.store import Store
    from compute.market.matching import Market
    from compute.market.demand import MatchRequest
    from compute.market.leases import UsageIn, meter
    from compute.receipts import Domain
    store = Store(args["url"])
    market = Market(store, Domain(**args["domain"]))
    if args["op"] == "place":
        market.place(args["user"], MatchRequest(**args["request"]))
    elif args["op"] == "meter":
        meter(store, market.domain, args["lease"], UsageIn(seconds=30, idempotency_key="t1"), args["provider"])
    else:
        market.end(args["lease"], "provider-lost", None)
    os._exit(0)
""")

# (operation, the step after which the process dies); each spawns an interpreter, so all but one are slow.
CRASHES = [
    ("place", "compute.market.placement.write_ledger"),
    pytest.param("place", "compute.market.placement.write_capacity", marks=pytest.mark.slow),
    pytest.param("place", "compute.market.placement.write_leases", marks=pytest.mark.slow),
    pytest.param("place", "compute.market.placement.sign_batch", marks=pytest.mark.slow),
    pytest.param("meter", "compute.receipts.sign", marks=pytest.mark.slow),
    pytest.param("meter", "compute.market.leases.post", marks=pytest.mark.slow),
    pytest.param("end", "compute.market.leases.post", marks=pytest.mark.slow),
    pytest.param("end", "compute.market.leases.slash", marks=pytest.mark.slow),
]


def snapshot(store) -> dict:
    with store.read() as s:
        return {
            "balances": sorted(s.execute(select(LedgerAccount.kind, LedgerAccount.owner, LedgerAccount.balance)).all()),
            "txs": s.scalar(select(func.count()).select_from(LedgerTx)),
            "free": sorted(s.execute(select(Provision.id, Provision.free_cpu, Provision.free_memory_mb)).all()),
            "leases": sorted(s.execute(select(Lease.id, Lease.status, Lease.metered_s)).all()),
            "usage": s.scalar(select(func.count()).select_from(UsageRecord)),
            "providers": sorted(s.execute(select(Provider.address, Provider.leases_failed)).all()),
        }


@pytest.mark.parametrize("op, step", CRASHES)
def test_crash_between_steps_changes_nothing(net, db_url, op, step):
    store = net.store
    provider, user = Account.create().address, Account.create().address
    with store.write() as s:
        s.add(
            Provider(
                address=provider,
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
        post(s, key="stake", kind="stake", entries=[(Acct("chain", "t"), -(10**10)), (Acct("stake", provider), 10**10)])
        post(s, key="deposit", kind="deposit", entries=[(Acct("chain", "t"), -(10**7)), (Acct("user", user), 10**7)])
    provisions.create(
        store, provider, ProvisionSpec(kind="vm", price_gwei=100, resources=Resources(cpu=4, memory_mb=8192))
    )
    market = Market(store, net.domain)
    lease = market.place(user, REQUEST) if op != "place" else None
    before = snapshot(store)
    module, attr = step.rsplit(".", 1)
    args = {
        "module": module,
        "attr": attr,
        "url": db_url,
        "op": op,
        "user": user,
        "provider": provider,
        "lease": lease.id if lease else None,
        "request": REQUEST.model_dump(),
        "domain": net.domain.model_dump(),
    }
    child = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True, timeout=120)
    assert child.returncode == 17, child.stderr[-2000:]
    assert snapshot(store) == before

    # The same operation then completes once, and the books still balance.
    if op == "place":
        market.place(user, REQUEST)
    elif op == "meter":
        first = meter(store, net.domain, lease.id, UsageIn(seconds=30, idempotency_key="t1"), provider)
        again = meter(store, net.domain, lease.id, UsageIn(seconds=30, idempotency_key="t1"), provider)
        assert first.id == again.id and first.lease.metered_s == 30 == again.lease.metered_s
    else:
        ended = market.end(lease.id, "provider-lost", None)
        assert ended.end_reason == "provider-lost" and ended.escrow_left_gwei == 0
    with store.read() as s:
        assert total(s) == 0

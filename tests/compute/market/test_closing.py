"""Closing metered leases in batches leaves exactly what metering then ending each lease one by one leaves."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from compute import receipts
from compute.ledger import Acct, balance, total
from compute.market import leases
from compute.market.closing import Closed, Closing
from compute.market.demand import MatchRequest
from compute.models import Lease, Provider, Provision, UsageRecord
from compute.provisions import Resources
from cxmpute.errors import Conflict, CxmputeError, Forbidden, NotFound

PRICE = 7
SPAN = 120


@pytest.fixture
def user(client, net, make_wallet, login, register_provider) -> str:
    """A funded user, and one provider offering two provisions that share one machine's capacity."""
    provider, user = make_wallet(), make_wallet()
    p_auth = register_provider(client, net, provider)
    for kind in ("inference", "container"):
        resp = client.post(
            "/v1/provisions",
            headers=p_auth,
            json={
                "kind": kind,
                "resources": {"cpu": 8, "memory_mb": 8192},
                "price_gwei": PRICE,
                **({"models": ["tiny"]} if kind == "inference" else {}),
            },
        )
        assert resp.status_code == 201, resp.text
    u_auth = login(client, user)
    tx = user.call_vault("deposit", 10**18)
    assert client.post("/v1/account/deposits", json={"tx_hash": tx}, headers=u_auth).status_code == 200
    return user.address


def _lease(net, user: str, cpu: int = 2) -> leases.LeaseOut:
    return net.market.place(
        user,
        MatchRequest(
            kind="inference",
            model="tiny",
            resources=Resources(cpu=cpu, memory_mb=512),
            price_max_gwei=PRICE,
            duration_s=SPAN,
        ),
    )


def _one_by_one(net, lease: leases.LeaseOut, seconds: int, key: str) -> leases.UsageOut | None:
    with net.store.write() as session:
        usage = (
            leases.meter_in(
                session, net.domain, lease.id, leases.UsageIn(seconds=seconds, idempotency_key=key), lease.provider
            )
            if seconds
            else None
        )
        leases.end_in(session, lease.id, "completed", None)
    return usage


def _state(net, lease_id: str) -> dict:
    """Everything a closing changes, without ids or times."""
    with net.store.read() as session:
        row = session.get(Lease, lease_id)
        usage = session.scalars(select(UsageRecord).where(UsageRecord.lease_id == lease_id)).all()
        return {
            "status": row.status,
            "end_reason": row.end_reason,
            "metered_s": row.metered_s,
            "paid_gwei": row.paid_gwei,
            "ended": row.ended_at is not None,
            "escrow": balance(session, Acct("escrow", lease_id)),
            "usage": [(u.seconds, u.amount_gwei, u.fee_gwei) for u in usage],
        }


def _snapshot(net, user: str, provider: str) -> dict:
    with net.store.read() as session:
        p = session.get(Provider, provider)
        free = session.execute(
            select(Provision.id, Provision.free_cpu, Provision.free_memory_mb)
            .where(Provision.provider == provider)
            .order_by(Provision.id)
        ).all()
        return {
            "user": balance(session, Acct("user", user)),
            "earnings": balance(session, Acct("earnings", provider)),
            "fee": balance(session, Acct("fee", "platform")),
            "completed": p.leases_completed,
            "reputation": p.reputation,
            "free": [tuple(r) for r in free],
            "total": total(session),
        }


def _moved(before: dict, after: dict) -> dict:
    return {k: after[k] - before[k] for k in ("user", "earnings", "fee", "completed")}


@pytest.mark.parametrize("seconds", [3, 0, SPAN + 50])
def test_a_batch_leaves_what_metering_and_ending_one_by_one_leaves(net, user, seconds):
    """Billed seconds, the lease's row, its receipt, the refund, the provider's record and the capacity freed on
    both provisions sharing the machine: the same either way (past the span, both cap at the span)."""
    by_hand, batched = _lease(net, user), _lease(net, user)
    provider = by_hand.provider
    start = _snapshot(net, user, provider)
    usage = _one_by_one(net, by_hand, seconds, "k")
    middle = _snapshot(net, user, provider)
    [closed] = net.market.close([Closing(batched.id, provider, seconds, "k")])
    end = _snapshot(net, user, provider)

    assert _state(net, batched.id) == _state(net, by_hand.id)
    assert _moved(middle, end) == _moved(start, middle) and end["total"] == 0
    assert end["reputation"] > 0 and end["reputation"] >= middle["reputation"]
    # both leases' capacity is back on both provisions, in the database and in the market's index
    assert [free for _, free, _ in end["free"]] == [8, 8]
    assert all(net.market.index.get(pid).free_cpu == 8 for pid, _, _ in end["free"])
    if seconds:
        assert isinstance(closed, Closed) and closed.seconds == usage.seconds == min(seconds, SPAN)
        assert closed.amount_gwei == usage.amount_gwei > 0 and closed.fee_gwei == usage.fee_gwei
        message = leases.usage_message(
            batched.id, f"{batched.id}:k", closed.seconds, closed.amount_gwei, closed.fee_gwei
        )
        assert receipts.verify(net.domain, "Usage", message, closed.signature)
    else:
        assert closed.usage_id is None and closed.amount_gwei == 0 and _state(net, batched.id)["usage"] == []


def test_closing_again_bills_nothing_more(net, user):
    lease = _lease(net, user)
    [first] = net.market.close([Closing(lease.id, lease.provider, 4, "once")])
    moved = _snapshot(net, user, lease.provider)
    [again] = net.market.close([Closing(lease.id, lease.provider, 4, "once")])
    assert again == first
    assert _snapshot(net, user, lease.provider) == moved and len(_state(net, lease.id)["usage"]) == 1
    # a new key on the ended lease is refused, billing nothing
    [late] = net.market.close([Closing(lease.id, lease.provider, 4, "later")])
    assert isinstance(late, Conflict) and _snapshot(net, user, lease.provider) == moved


def test_each_refusal_is_its_own_and_the_rest_of_the_batch_commits(net, user, make_wallet):
    ok, theirs, twice = _lease(net, user), _lease(net, user), _lease(net, user)
    outcomes = net.market.close(
        [
            Closing("no-such-lease", ok.provider, 1, "a"),
            Closing(theirs.id, make_wallet().address, 1, "a"),  # only the lease's provider reports its use
            Closing(ok.id, ok.provider, 2, "a"),
            Closing(twice.id, twice.provider, 2, "a"),
            Closing(twice.id, twice.provider, 2, "a"),  # the same report twice in one batch: billed once
            Closing(twice.id, twice.provider, 2, "b"),  # the lease ended a moment ago in this batch
        ]
    )
    assert [type(o) for o in outcomes] == [NotFound, Forbidden, Closed, Closed, Closed, Conflict]
    assert outcomes[3] == outcomes[4]
    assert all(isinstance(o, CxmputeError) and o.field == "lease_id" for o in outcomes[:2] + outcomes[5:])
    assert _state(net, ok.id)["usage"] == [(2, outcomes[2].amount_gwei, outcomes[2].fee_gwei)]
    assert len(_state(net, twice.id)["usage"]) == 1 and _state(net, twice.id)["status"] == "ended"
    assert _state(net, theirs.id)["status"] == "active"
    with net.store.read() as session:
        assert total(session) == 0


def test_a_failure_never_closes_through_a_batch(net, user):
    """Ending a lease as a failure slashes its provider: that stays on the one path that does it."""
    with pytest.raises(ValueError):
        Closing("lease", "0xprovider", 1, "k", reason="provider-lost")

"""Settling gateway requests on SQLite and PostgreSQL: concurrent settlements share one commit, each request is
billed exactly once (settling it again bills nothing more), one refused settlement undoes none of the others in
its batch, and a failure inside a settlement leaves nothing half-written."""

from __future__ import annotations

import uuid
from functools import partial

import pytest
from sqlalchemy import func, select

from compute.inference import settlement
from compute.inference.models import RequestRecord
from compute.inference.settlement import Settler
from compute.ledger import Acct, balance
from compute.market import closing
from compute.market.demand import MatchRequest
from compute.models import Lease, UsageRecord, utcnow
from compute.provisions import Resources
from tests.support.group_commit import together

PRICE = 5


@pytest.fixture
def user(client, net, make_wallet, login, register_provider) -> str:
    """A funded user and an inference provision with room for eight requests at once."""
    provider, user = make_wallet(), make_wallet()
    p_auth = register_provider(client, net, provider)
    resp = client.post(
        "/v1/provisions",
        headers=p_auth,
        json={"kind": "inference", "resources": {"cpu": 8, "memory_mb": 4096}, "price_gwei": PRICE, "models": ["tiny"]},
    )
    assert resp.status_code == 201, resp.text
    u_auth = login(client, user)
    tx = user.call_vault("deposit", 10**18)
    assert client.post("/v1/account/deposits", json={"tx_hash": tx}, headers=u_auth).status_code == 200
    return user.address


def _request(net, user: str, seconds: int = 2) -> RequestRecord:
    """A request served on a freshly placed per-second lease, as the gateway records it before settling."""
    lease = net.market.place(
        user,
        MatchRequest(
            kind="inference",
            model="tiny",
            resources=Resources(cpu=1, memory_mb=1),
            price_max_gwei=PRICE,
            duration_s=300,
        ),
    )
    return RequestRecord(
        id=str(uuid.uuid4()),
        user=user,
        model="tiny",
        operation="completions",
        status="ok",
        lease_id=lease.id,
        provision_id=lease.provision_id,
        provider=lease.provider,
        prompt_tokens=3,
        completion_tokens=4,
        seconds=seconds,
        amount_gwei=0,
        created_at=utcnow(),
    )


def _user_balance(net, user: str) -> int:
    with net.store.read() as session:
        return balance(session, Acct("user", user))


def _lease(net, lease_id: str) -> Lease:
    with net.store.read() as session:
        return session.get(Lease, lease_id)


def _usages(net, lease_id: str) -> int:
    with net.store.read() as session:
        return session.scalar(select(func.count()).select_from(UsageRecord).where(UsageRecord.lease_id == lease_id))


def _stored(net, record_id: str) -> RequestRecord | None:
    with net.store.read() as session:
        return session.get(RequestRecord, record_id)


def _settle_together(settler: Settler, records: list[RequestRecord], monkeypatch) -> list[int]:
    """Settle ``records`` from one thread each, sharing batches for sure; returns the sizes of the batches."""
    outcomes, sizes = together(settler, [partial(settler.settle, record) for record in records], monkeypatch)
    errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert not errors, errors
    return sizes


def test_concurrent_settlements_share_one_commit_and_each_is_billed_once(net, user, monkeypatch):
    before = _user_balance(net, user)
    records = [_request(net, user) for _ in range(6)]

    assert _settle_together(Settler(net), records, monkeypatch) == [1, 5]

    for record in records:
        lease = _lease(net, record.lease_id)
        assert lease.status == "ended" and lease.end_reason == "completed"
        assert lease.metered_s == 2 and lease.paid_gwei == PRICE * lease.compute_units * 2
        stored = _stored(net, record.id)
        assert stored.status == "ok" and stored.amount_gwei == lease.paid_gwei and stored.error is None
    # the unused escrow came back: the user paid exactly what was metered
    assert before - _user_balance(net, user) == sum(_lease(net, r.lease_id).paid_gwei for r in records)
    # the capacity the leases held is back in the market's index
    assert net.market.index.get(records[0].provision_id).free_cpu == 8


def test_settling_a_request_again_bills_nothing_more(net, user):
    record = _request(net, user)
    settler = Settler(net)
    settler.settle(record)
    after_first = _user_balance(net, user)

    again = RequestRecord(
        **{
            c: getattr(record, c)
            for c in (
                "id",
                "user",
                "model",
                "operation",
                "status",
                "lease_id",
                "provision_id",
                "provider",
                "prompt_tokens",
                "completion_tokens",
                "seconds",
                "created_at",
            )
        }
    )
    settler.settle(again)

    assert _user_balance(net, user) == after_first
    assert _usages(net, record.lease_id) == 1
    assert _stored(net, record.id).amount_gwei == _lease(net, record.lease_id).paid_gwei > 0


def test_a_refused_settlement_undoes_none_of_its_batch(net, user, monkeypatch):
    first, gone, served = _request(net, user), _request(net, user), _request(net, user)
    net.market.end(gone.lease_id, "expired", None)  # e.g. the sweeper ended it after its escrowed span

    assert _settle_together(Settler(net), [first, gone, served], monkeypatch) == [1, 2]
    stored = _stored(net, gone.id)
    assert stored.amount_gwei == 0 and stored.error.startswith("not settled")
    assert _lease(net, gone.lease_id).end_reason == "expired" and _usages(net, gone.lease_id) == 0
    assert _stored(net, served.id).amount_gwei == _lease(net, served.lease_id).paid_gwei > 0


def test_a_failure_inside_a_settlement_leaves_nothing_half_written(net, user, monkeypatch):
    before = _user_balance(net, user)
    record = _request(net, user)
    escrowed = _user_balance(net, user)

    def crash(*args, **kwargs):
        raise RuntimeError("the process died between metering and ending the lease")

    monkeypatch.setattr(closing, "_end", crash)
    settler = Settler(net)
    with pytest.raises(RuntimeError):
        settler.settle(record)
    # metered in the same transaction as the end: rolled back with it, so nothing was billed or recorded
    assert _lease(net, record.lease_id).status == "active" and _usages(net, record.lease_id) == 0
    assert _stored(net, record.id) is None and _user_balance(net, user) == escrowed

    monkeypatch.undo()
    settler.settle(record)  # the writer went on: the retry settles it, once
    assert _usages(net, record.lease_id) == 1 and _lease(net, record.lease_id).status == "ended"
    assert _stored(net, record.id).amount_gwei == before - _user_balance(net, user) > 0


def test_one_settler_per_network(net):
    assert settlement.settler(net) is settlement.settler(net)

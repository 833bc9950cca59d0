"""The job record is where a result is accepted: once, only from the provider it was dispatched to, and never
after the platform gave the work to someone else."""

from __future__ import annotations

import time
from functools import partial

import pytest
from eth_account import Account

from compute import provisions
from compute.ledger import Acct, balance, post
from compute.market.demand import MatchRequest
from compute.market.matching import Market, NoMatchError
from compute.models import Provider, Provision, UsageRecord, utcnow
from compute.providers.registry import is_alive, mark_down
from compute.provisions import ProvisionSpec, Resources
from compute.worker import jobs
from compute.worker.jobs import Completion, JobSpec
from compute.worker.results import results
from cxmpute.errors import Conflict, Forbidden
from tests.support.group_commit import together


@pytest.fixture
def market(net):
    return Market(net.store, net.domain)


def _provider(store) -> str:
    address = Account.create().address
    with store.write() as s:
        s.add(
            Provider(
                address=address,
                name="p",
                region="local",
                profile={},
                benchmark_score=1.0,
                registered_at=utcnow(),
                last_heartbeat_ts=int(time.time()),
                heartbeats=1,
                leases_completed=0,
                leases_failed=0,
                reputation=0.5,
            )
        )
        s.flush()
        post(
            s,
            key=f"stake-{address}",
            kind="stake",
            entries=[(Acct("chain", "t"), -(10**10)), (Acct("stake", address), 10**10)],
        )
    provisions.create(
        store, address, ProvisionSpec(kind="agent", price_gwei=3, resources=Resources(cpu=2, memory_mb=2048))
    )
    return address


def _user(store, gwei: int = 10**9) -> str:
    address = Account.create().address
    with store.write() as s:
        post(
            s,
            key=f"dep-{address}",
            kind="deposit",
            entries=[(Acct("chain", "t"), -gwei), (Acct("user", address), gwei)],
        )
    return address


def _dispatch(net, market, owner: str, attempt: int = 1) -> jobs.JobOut:
    spec = JobSpec(
        kind="agent",
        payload={"x": 1},
        owner=owner,
        work_key="run:node",
        price_max_gwei=10,
        timeout_s=60,
        resources=Resources(cpu=1, memory_mb=512),
    )
    recording = jobs.Recording(f"00000000-0000-0000-0000-{attempt:012d}", spec, attempt)
    req = MatchRequest(kind="agent", resources=spec.resources, price_max_gwei=10, duration_s=60)
    market.place(owner, req, extra=recording)
    assert recording.job is not None
    stored = jobs.get(net.store, recording.job.id)  # as recorded with its lease
    assert stored.model_dump(exclude={"created_at"}) == recording.job.model_dump(exclude={"created_at"})
    return recording.job


def test_a_result_is_settled_once_with_its_seconds_and_the_lease_closed(net, market):
    provider, owner = _provider(net.store), _user(net.store)
    job = _dispatch(net, market, owner)
    claimed = jobs.claim(net.store, job.id, provider)
    assert claimed.payload == {"x": 1} and claimed.owner == owner
    with pytest.raises(Conflict):
        jobs.claim(net.store, job.id, provider)  # a job starts once
    done = jobs.complete(net.store, net.domain, job.id, provider, Completion(ok=True, result={"y": 2}, seconds=2.2))
    assert done.status == "done" and done.result == {"y": 2}
    assert done.cost_gwei == 3 * 2 * 3  # price x compute units (1 CPU + 1 for 512 MiB) x ceil(2.2) seconds
    with pytest.raises(Conflict):  # a duplicate report is refused, not paid again
        jobs.complete(net.store, net.domain, job.id, provider, Completion(ok=True, result={"y": 3}, seconds=5))
    with net.store.read() as s:
        assert s.query(UsageRecord).count() == 1
        assert balance(s, Acct("user", owner)) == 10**9 - done.cost_gwei  # the unused escrow came back


def test_a_late_result_from_an_abandoned_job_is_refused_and_not_paid(net, market):
    provider, owner = _provider(net.store), _user(net.store)
    job = _dispatch(net, market, owner)
    jobs.claim(net.store, job.id, provider)
    with net.store.read() as s:
        stake_before = balance(s, Acct("stake", provider))
    abandoned = jobs.abandon(net.store, job.id, "provider-lost")
    assert abandoned.status == "abandoned"
    with pytest.raises(Conflict, match="not accepted"):
        jobs.complete(net.store, net.domain, job.id, provider, Completion(ok=True, result={"late": True}, seconds=1))
    with net.store.read() as s:
        assert s.query(UsageRecord).count() == 0
        assert balance(s, Acct("user", owner)) > 10**9  # escrow refunded, plus the slashed stake as compensation
        assert balance(s, Acct("stake", provider)) < stake_before
    assert jobs.get(net.store, job.id).result is None


def test_only_the_chosen_provider_may_claim_or_report(net, market):
    _provider(net.store)
    owner = _user(net.store)
    job = _dispatch(net, market, owner)
    stranger = Account.create().address
    with pytest.raises(Forbidden):
        jobs.claim(net.store, job.id, stranger)


def test_a_provider_marked_down_leaves_matching_until_its_next_heartbeat(net, market):
    provider, owner = _provider(net.store), _user(net.store)
    with net.store.write() as s:
        assert mark_down(s, provider) == 1
        row = s.get(Provider, provider)
        row.last_heartbeat_ts = int(time.time()) - 3600
        assert not is_alive(row)
    market.refresh_provider(provider)
    with pytest.raises(NoMatchError) as exc:
        market.place(owner, MatchRequest(kind="agent", price_max_gwei=10, duration_s=60))
    assert exc.value.explanation.excluded == {"status": 1}
    with net.store.read() as s:
        assert [p.status for p in s.query(Provision).filter_by(provider=provider)] == ["down"]


def test_results_reported_together_are_accepted_in_one_batch_each_once(net, market, monkeypatch):
    """Reports arriving while a batch is being written share the next commit; a job reported twice in it is paid
    once, and a report refused (another provider's) takes nothing from the others."""
    provider, owner = _provider(net.store), _user(net.store)
    dispatched = [_dispatch(net, market, owner, attempt) for attempt in (1, 2)]  # the provision holds two
    for job in dispatched:
        jobs.claim(net.store, job.id, provider)
    reports = [
        (dispatched[0].id, provider),
        (dispatched[1].id, provider),
        (dispatched[1].id, provider),
        (dispatched[0].id, Account.create().address),
    ]
    outcomes, sizes = together(
        results(net.store, net.domain),
        [
            partial(
                jobs.complete,
                net.store,
                net.domain,
                job_id,
                by,
                Completion(ok=True, result={"i": i}, seconds=1),
                market.show_free,
            )
            for i, (job_id, by) in enumerate(reports)
        ],
        monkeypatch,
    )

    assert sizes == [1, 3]
    assert [type(outcome).__name__ for outcome in outcomes] == ["JobOut", "JobOut", "Conflict", "Forbidden"]
    assert [jobs.get(net.store, job.id).result for job in dispatched] == [{"i": 0}, {"i": 1}]
    with net.store.read() as s:
        assert s.query(UsageRecord).count() == 2
        assert balance(s, Acct("user", owner)) == 10**9 - outcomes[0].cost_gwei - outcomes[1].cost_gwei
    # the capacity the leases held is back, in the market's index too: the next two place at once
    assert len([_dispatch(net, market, owner, attempt) for attempt in (3, 4)]) == 2

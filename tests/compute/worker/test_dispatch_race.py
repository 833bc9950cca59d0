"""Two dispatchers running the same work at the same moment (two run executors that both believe they hold the
run, one's claim having lapsed while it was still alive): the work runs once and is billed once. The second to
record the attempt ends the lease it just opened unused and adopts the first one's job."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from compute.ledger import Acct, balance
from compute.models import Lease, Provider, UsageRecord
from compute.provisions import Resources
from compute.worker import jobs
from compute.worker.dispatch import Dispatcher
from cxmpute import db
from cxmpute.db import migrate, migration_locations
from tests.compute.worker import test_push as push
from tests.compute.worker.test_push import STAKE, _owner, _spec, started, workers

# test_push's fixtures: the platform API served in this process, and its echo and hang handlers.
api, test_handlers = push.api, push.test_handlers


def _owner_leases(net, owner: str) -> list[Lease]:
    with net.store.read() as s:
        return s.query(Lease).filter_by(user=owner).order_by(Lease.started_at).all()


def test_two_dispatchers_placing_the_same_work_at_once_run_and_bill_it_once(net, api, monkeypatch):
    owner = _owner(net)
    read = jobs.latest
    both_read = threading.Barrier(2, timeout=10)

    def latest_then_wait(store, work_key: str) -> list[jobs.JobOut]:
        found = read(store, work_key)
        both_read.wait()  # neither places before both have seen that the work has no attempt yet
        return found

    monkeypatch.setattr(jobs, "latest", latest_then_wait)
    with workers(net, api):

        async def both():
            return await asyncio.gather(
                Dispatcher(net).run(_spec(owner, "twin")), Dispatcher(net).run(_spec(owner, "twin"))
            )

        first, second = asyncio.run(both())
    assert first.status == "done" and first.result == {"echo": "twin"}
    assert second.id == first.id  # the loser returns the winner's job
    assert [j.id for j in read(net.store, "run-twin:node:1")] == [first.id]  # one job
    leases = _owner_leases(net, owner)
    assert len(leases) == 2 and {lease.status for lease in leases} == {"ended"}  # both placed; none left active
    (unused,) = [lease for lease in leases if lease.id != first.lease_id]
    assert unused.end_reason == "user-cancelled" and unused.paid_gwei == 0 and unused.metered_s == 0
    with net.store.read() as s:
        assert balance(s, Acct("user", owner)) == 10**12 - first.cost_gwei  # charged once
        assert s.query(UsageRecord).filter_by(lease_id=unused.id).count() == 0


def test_the_dispatcher_that_loses_the_race_ends_its_lease_unpaid_and_adopts_the_winners_job(net, api, monkeypatch):
    owner = _owner(net)
    work_key = "run-race:node:1"
    with workers(net, api) as (worker,):

        async def race():
            winner = asyncio.ensure_future(Dispatcher(net).run(_spec(owner, "race", kind="hang")))
            while "race" not in started:
                await asyncio.sleep(0.02)
            (running,) = await asyncio.to_thread(jobs.latest, net.store, work_key)
            # The loser read before the winner recorded its job: it places attempt 1 as well.
            read = jobs.latest
            monkeypatch.setattr(jobs, "latest", lambda store, key: [])
            loser = asyncio.ensure_future(Dispatcher(net).run(_spec(owner, "race", kind="hang")))
            deadline = time.monotonic() + 20
            while not [
                lease
                for lease in await asyncio.to_thread(_owner_leases, net, owner)
                if lease.id != running.lease_id and lease.status == "ended"
            ]:
                assert time.monotonic() < deadline and not loser.done(), "the loser never ended its lease"
                await asyncio.sleep(0.02)
            monkeypatch.setattr(jobs, "latest", read)
            await asyncio.sleep(0.3)
            assert not loser.done()  # it watches the winner's job, still running
            # The winner's provider finishes it (as if the handler returned): both dispatchers return that job.
            await asyncio.to_thread(
                jobs.complete,
                net.store,
                net.domain,
                running.id,
                running.provider,
                jobs.Completion(ok=True, result={"won": 1}, seconds=1),
            )
            return running, await asyncio.wait_for(winner, 10), await asyncio.wait_for(loser, 10)

        running, won, adopted = asyncio.run(race())
    assert won.id == adopted.id == running.id and adopted.status == "done" and adopted.result == {"won": 1}
    assert [j.id for j in jobs.latest(net.store, work_key)] == [running.id]
    leases = _owner_leases(net, owner)
    assert len(leases) == 2 and {lease.status for lease in leases} == {"ended"}
    (unused,) = [lease for lease in leases if lease.id != running.lease_id]
    assert unused.end_reason == "user-cancelled" and unused.paid_gwei == 0 and unused.metered_s == 0
    with net.store.read() as s:
        assert balance(s, Acct("escrow", unused.id)) == 0  # its whole escrow went back
        assert balance(s, Acct("user", owner)) == 10**12 - adopted.cost_gwei  # only the winner's seconds are paid
        assert s.query(UsageRecord).filter_by(lease_id=unused.id).count() == 0
        assert balance(s, Acct("stake", worker.address)) == STAKE  # the provider is not slashed
        assert s.get(Provider, worker.address).leases_failed == 0


def test_a_dispatcher_waiting_for_capacity_the_winner_holds_adopts_its_job_without_leasing(net, api, monkeypatch):
    """The loser need not lease to find it lost: waiting long for capacity (the winner's lease takes all of it),
    it sees the winner's job for its attempt and adopts it."""
    owner = _owner(net)
    whole = _spec(owner, "full", kind="hang").model_copy(update={"resources": Resources(cpu=8, memory_mb=512)})
    with workers(net, api):

        async def race():
            winner = asyncio.ensure_future(Dispatcher(net).run(whole))
            while "full" not in started:
                await asyncio.sleep(0.02)
            (running,) = await asyncio.to_thread(jobs.latest, net.store, whole.work_key)
            read = jobs.latest
            monkeypatch.setattr(jobs, "latest", lambda store, key: [])
            loser = asyncio.ensure_future(Dispatcher(net).run(whole))
            await asyncio.sleep(3.0)  # past the waits after which a waiting dispatcher looks for its attempt
            monkeypatch.setattr(jobs, "latest", read)
            assert not loser.done()
            await asyncio.to_thread(
                jobs.complete,
                net.store,
                net.domain,
                running.id,
                running.provider,
                jobs.Completion(ok=True, result={"won": 1}, seconds=1),
            )
            return running, await asyncio.wait_for(winner, 10), await asyncio.wait_for(loser, 10)

        running, won, adopted = asyncio.run(race())
    assert won.id == adopted.id == running.id and adopted.status == "done"
    assert [lease.id for lease in _owner_leases(net, owner)] == [running.lease_id]  # the loser leased nothing
    with net.store.read() as s:
        assert balance(s, Acct("user", owner)) == 10**12 - adopted.cost_gwei


def test_the_migration_renumbers_twin_attempts_recorded_before_it(tmp_path):
    """A database the race already wrote twin attempts to upgrades: every row stays, the oldest twin keeps its
    number and the others move past the work's highest attempt."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    cfg.set_main_option("version_locations", " ".join(migration_locations()))
    cfg.set_main_option("path_separator", "space")
    cfg.attributes["url"] = url
    with db._migrate_lock:  # Alembic's context is process-global: no other migration (another test's) meanwhile
        command.upgrade(cfg, "c0005_lease_proofs")
    engine = create_engine(url)  # no foreign keys enforced: the jobs' leases are left out
    rows = [
        ("a", "w1", 1, "2026-01-01 00:00:01"),
        ("b", "w1", 1, "2026-01-01 00:00:02"),
        ("c", "w1", 2, "2026-01-01 00:00:03"),
        ("d", "w1", 1, "2026-01-01 00:00:04"),
        ("e", "w2", 1, "2026-01-01 00:00:05"),
    ]
    with engine.begin() as conn:
        for job_id, work_key, attempt, created in rows:
            conn.execute(
                text(
                    "INSERT INTO cx_jobs (id, work_key, attempt, kind, owner, provider, lease_id, payload, "
                    "status, cost_gwei, created_at) VALUES (:id, :key, :attempt, 'echo', 'o', 'p', 'l', "
                    "'{}', 'done', 0, :created)"
                ),
                {"id": job_id, "key": work_key, "attempt": attempt, "created": created},
            )
    migrate(url)  # the platform's own upgrade, to every package's newest revision
    with engine.connect() as conn:
        found = dict(conn.execute(text("SELECT id, attempt FROM cx_jobs")).all())
        assert found == {"a": 1, "b": 3, "c": 2, "d": 4, "e": 1}
        with pytest.raises(IntegrityError):
            conn.execute(text("UPDATE cx_jobs SET attempt = 1 WHERE id = 'b'"))
    engine.dispose()

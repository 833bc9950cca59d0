"""Service and replica records on SQLite and PostgreSQL: what the reconciler sees, stops that are never undone,
and replica reports that only the replica's current provider may make."""

from __future__ import annotations

import time
import uuid

import pytest
from eth_account import Account

from compute import provisions
from compute.ledger import Acct, post
from compute.market.demand import MatchRequest
from compute.market.matching import Market
from compute.models import Provider, utcnow
from compute.provisions import ProvisionSpec, Resources
from compute.services import registry, reports, slots
from compute.services.models import Service
from compute.worker import jobs
from compute.worker.jobs import JobSpec
from cxmpute.db import session_scope
from cxmpute.errors import Forbidden, NotFound
from cxmpute.settings import get_settings


@pytest.fixture
def settings(platform_db_url):
    return get_settings().model_copy(update={"database_url": platform_db_url})


def _service(settings, owner: str = "0xowner", name: str = "web") -> str:
    """A registered service (deploy's image and market checks are covered through the API)."""
    service_id = str(uuid.uuid4())
    with session_scope(registry.database(settings)) as session:
        session.add(
            Service(
                id=service_id,
                owner=owner,
                name=name,
                image="bafy",
                port=8080,
                env={"A": "1"},
                cpu=1,
                memory_mb=256,
                pids=128,
                min_replicas=1,
                max_replicas=2,
                target_inflight=8,
                price_min_gwei=0,
                price_max_gwei=10,
                status="active",
                created_at=utcnow(),
            )
        )
    return service_id


def test_replicas_are_reconciled_until_stopped_and_a_stop_is_never_undone(settings):
    service_id = _service(settings)
    first = slots.add_replica(settings, service_id)
    second = slots.add_replica(settings, service_id)
    [(service, replicas)] = slots.services_to_reconcile(settings)
    assert service.id == service_id and [r.id for r in replicas] == [first.id, second.id]
    assert all(r.status == "pending" and len(r.token) == 64 for r in replicas)

    deleted = registry.delete(settings, "0xowner", "web")
    assert deleted.status == "deleted" and {r.status for r in deleted.replicas} == {"stopping"}
    slots.set_status(settings, first.id, "pending", error="its container exited", restarted=True)
    assert slots.load(settings, first.id)[1].status == "stopping"  # the stop stands
    slots.set_status(settings, first.id, "stopped")
    [(service, replicas)] = slots.services_to_reconcile(settings)  # the deleted service still has one to stop
    assert service.status == "deleted" and [r.id for r in replicas] == [second.id]
    slots.set_status(settings, second.id, "stopped")
    assert slots.services_to_reconcile(settings) == []
    assert slots.load(settings, second.id)[1].ended_at is not None
    with pytest.raises(NotFound) as caught:
        registry.get(settings, "0xowner", "web")
    assert caught.value.field == "name"


def test_services_are_visible_to_their_owner_only(settings):
    _service(settings, owner="0xa", name="api")
    assert [s.name for s in registry.list_for(settings, "0xa")] == ["api"]
    assert registry.list_for(settings, "0xb") == []
    with pytest.raises(NotFound):
        registry.get(settings, "0xb", "api")


def test_a_replica_report_needs_its_token_and_is_told_to_stop_without_a_running_job(settings, net):
    replica = slots.add_replica(settings, _service(settings))
    report = reports.Beat(provider="0xprovider", state="starting")
    with pytest.raises(Forbidden) as caught:
        reports.beat(settings, replica.id, "0" * 64, report)
    assert caught.value.field == "token"
    with pytest.raises(Forbidden):
        reports.image_stream(settings, replica.id, "0" * 64)
    assert reports.beat(settings, replica.id, replica.token, report).run is False  # no job of its runs


def test_a_report_from_an_earlier_dispatch_of_its_slot_is_told_to_stop(settings, net):
    """A restarted platform dispatches a slot again, maybe to the provider still running the earlier dispatch's
    job: only the newest dispatch's job keeps running."""
    provider, owner = Account.create().address, Account.create().address
    with net.store.write() as s:
        s.add(
            Provider(
                address=provider,
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
            key=f"stake-{provider}",
            kind="stake",
            entries=[(Acct("chain", "t"), -(10**10)), (Acct("stake", provider), 10**10)],
        )
        post(
            s,
            key=f"dep-{owner}",
            kind="deposit",
            entries=[(Acct("chain", "t"), -(10**9)), (Acct("user", owner), 10**9)],
        )
    provisions.create(
        net.store, provider, ProvisionSpec(kind="container", price_gwei=3, resources=Resources(cpu=2, memory_mb=2048))
    )
    replica = slots.add_replica(settings, _service(settings))
    spec = JobSpec(
        kind="service",
        provision="container",
        owner=owner,
        work_key=slots.work_key(replica.id),
        payload={"dispatch": "second"},
        price_max_gwei=10,
        timeout_s=60,
        resources=Resources(cpu=1, memory_mb=512),
    )
    Market(net.store, net.domain).place(
        owner,
        MatchRequest(kind="container", resources=spec.resources, price_max_gwei=10, duration_s=60),
        extra=jobs.Recording("job-of-the-second-dispatch", spec, 1),
    )
    jobs.claim(net.store, "job-of-the-second-dispatch", provider)

    def runs(dispatch: str | None) -> bool:
        report = reports.Beat(provider=provider, state="starting", dispatch=dispatch)
        return reports.beat(settings, replica.id, replica.token, report).run

    assert runs("second") is True
    assert runs("first") is False  # the earlier dispatch's job, its lease given up
    assert runs(None) is True  # a report that names no dispatch is judged by its provider alone

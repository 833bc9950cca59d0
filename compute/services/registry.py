"""Deployed services and their replica slots: validation at deploy, reads for the API, and the reports a
replica's provider sends (its address, that it still runs, its logs), which are also where it learns to stop."""

from __future__ import annotations

import hmac
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import func, select

from compute.market.demand import MatchRequest, PriceRange
from compute.market.matching import NoMatchError
from compute.models import aware, utcnow
from compute.network import get_network
from compute.provisions import Resources
from compute.services.errors import ServiceError
from compute.services.image import check_stored_image
from compute.services.models import Replica, Service
from compute.worker import jobs
from cxmpute.db import migrate, session_scope
from cxmpute.errors import Conflict, Forbidden, NotFound
from cxmpute.settings import Settings, get_settings
from stxrage import open_storage

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
TAR_MAGIC = b"ustar"
ReplicaStatus = Literal["pending", "starting", "live", "stopping", "stopped"]
# A replica whose provider has not reported for this many heartbeat intervals is not routed to.
STALE_BEATS = 3


class ServiceIn(PriceRange):
    """A service to run: a ``docker save`` tarball kept in Stxrage, the port it listens on, env and limits."""

    name: str = Field(..., description="Lower-case letters, digits and '-' (up to 63)")
    image: str = Field(
        ..., min_length=1, max_length=120, description="CID of the image's `docker save` tarball in your Stxrage files"
    )
    port: int = Field(..., ge=1, le=65535, description="TCP port the container serves HTTP on")
    env: dict[str, str] = Field(default_factory=dict, max_length=64, description="Environment of the container")
    cpu: int = Field(1, ge=1, le=64, description="vCPUs per replica")
    memory_mb: int = Field(256, ge=32, le=65536, description="Memory limit per replica")
    pids: int = Field(128, ge=8, le=4096, description="Process limit per replica")
    min_replicas: int = Field(1, ge=1, le=100)
    max_replicas: int = Field(1, ge=1, le=100)
    target_inflight: int = Field(
        8, ge=1, le=10_000, description="In-flight requests per replica the autoscaler aims for"
    )
    public: bool = Field(
        False,
        description="Anyone may call it, without signing in, at "
        "/v1/public/services/{owner}/{name}/{path}; otherwise only you, at /v1/services/{name}/proxy",
    )
    network: bool = Field(
        False,
        description="Let the replicas open connections to the public internet (never to "
        "their provider's machine or private addresses); without it they have no network, and "
        "are reached through the gateway only",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError("lower-case letters, digits and '-' (up to 63), starting with a letter or digit")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k in value if not ENV_NAME.match(k)]
        if bad:
            raise ValueError(f"not environment variable names: {bad[:5]}")
        if sum(len(k) + len(v) for k, v in value.items()) > 64 * 1024:
            raise ValueError("at most 64 KiB of environment")
        return value

    @property
    def resources(self) -> Resources:
        return Resources(cpu=self.cpu, memory_mb=self.memory_mb)


class ReplicaOut(BaseModel):
    id: str
    status: ReplicaStatus
    live: bool = Field(description="Ready and reporting: the gateway routes to it")
    provider: str | None
    job_id: str | None
    lease_id: str | None
    host: str | None
    host_port: int | None
    restarts: int = Field(description="Times its work started again after the container or its provider failed")
    error: str | None
    created_at: datetime
    ended_at: datetime | None


class ServiceOut(ServiceIn):
    id: str
    owner: str
    status: Literal["active", "deleted"]
    created_at: datetime
    deleted_at: datetime | None
    replicas: list[ReplicaOut] = Field(default_factory=list, description="Replicas not yet stopped")


class Beat(BaseModel):
    """A replica's report from its provider, every heartbeat interval while its job runs."""

    provider: str = Field(..., min_length=1, max_length=42)
    dispatch: str | None = Field(
        None,
        max_length=64,
        description="The dispatch of the slot the reporting job belongs to (its payload's); None: any",
    )
    state: Literal["starting", "ready"]
    host: str | None = Field(None, max_length=255)
    host_port: int | None = Field(None, ge=1, le=65535)
    logs: str | None = Field(
        None, max_length=64 * 1024, description="The container's newest output; None: unchanged since the last report"
    )


class BeatReply(BaseModel):
    run: bool = Field(description="False: stop the container and end the job")


def database(settings: Settings) -> str:
    url = settings.resolved_database_url
    migrate(url)
    return url


def _session(settings: Settings, write: bool = False):
    return session_scope(database(settings), immediate=write)


def fresh(row: Replica, now: float | None = None) -> bool:
    window = STALE_BEATS * get_settings().heartbeat_interval_s + 1
    return row.status == "live" and (now or time.time()) - row.beat_ts <= window


def replica_out(row: Replica) -> ReplicaOut:
    return ReplicaOut(
        id=row.id,
        status=row.status,
        live=fresh(row),
        provider=row.provider,
        job_id=row.job_id,
        lease_id=row.lease_id,
        host=row.host,
        host_port=row.host_port,
        restarts=row.restarts,
        error=row.error,
        created_at=aware(row.created_at),
        ended_at=aware(row.ended_at) if row.ended_at else None,
    )


def _out(session, row: Service) -> ServiceOut:
    replicas = session.scalars(
        select(Replica).where(Replica.service_id == row.id, Replica.status != "stopped").order_by(Replica.created_at)
    ).all()
    fields = {name: getattr(row, name) for name in ServiceOut.model_fields if name != "replicas"}
    fields["created_at"] = aware(row.created_at)
    fields["deleted_at"] = aware(row.deleted_at) if row.deleted_at else None
    return ServiceOut.model_validate({**fields, "replicas": [replica_out(r) for r in replicas]})


def _check_ranges(req: ServiceIn) -> None:
    if req.max_replicas < req.min_replicas:
        raise ServiceError(
            f"max_replicas ({req.max_replicas}) is below min_replicas ({req.min_replicas})", field="max_replicas"
        )


def _check_image(settings: Settings, owner: str, cid: str) -> None:
    storage = open_storage(settings)
    try:
        info = storage.stat(cid, owner)
        head = storage.get_bytes(cid, owner, 0, 512)
    except Exception:  # an unknown, malformed or foreign CID all read as "not one of your files"
        raise NotFound(
            f"no file {cid} you can read in storage; upload the image's `docker save` tarball first", field="image"
        ) from None
    if info.kind != "file" or len(head) < 512 or head[257:262] != TAR_MAGIC:
        raise ServiceError(f"{cid} is not a `docker save` tarball", field="image")
    check_stored_image(storage, cid, owner, info.size)


def _check_market(req: ServiceIn, settings: Settings) -> None:
    quote = get_network().market.quote(
        MatchRequest(
            kind="container",
            resources=req.resources,
            price_min_gwei=req.price_min_gwei,
            price_max_gwei=req.price_max_gwei,
            duration_s=settings.service_term_s,
        )
    )
    if not quote.matched:
        raise NoMatchError(quote.no_match)


def deploy(settings: Settings, owner: str, req: ServiceIn) -> ServiceOut:
    """Register the service; its replicas are placed by the reconciler. The image must be one of the owner's
    files and some container provision must match the price range now."""
    _check_ranges(req)
    _check_image(settings, owner, req.image)
    _check_market(req, settings)
    with _session(settings, write=True) as session:
        taken = session.scalar(
            select(Service.id).where(Service.owner == owner, Service.name == req.name, Service.status == "active")
        )
        if taken is not None:
            raise Conflict(f"service {req.name!r} already runs; delete it first", field="name")
        row = Service(id=str(uuid.uuid4()), owner=owner, status="active", created_at=utcnow(), **req.model_dump())
        session.add(row)
        session.flush()
        return _out(session, row)


def _named(session, owner: str, name: str) -> Service:
    row = session.scalar(
        select(Service).where(Service.owner == owner, Service.name == name, Service.status == "active")
    )
    if row is None:
        raise NotFound(f"no service {name!r}", field="name")
    return row


def get(settings: Settings, owner: str, name: str) -> ServiceOut:
    with _session(settings) as session:
        return _out(session, _named(session, owner, name))


def list_for(settings: Settings, owner: str) -> list[ServiceOut]:
    with _session(settings) as session:
        rows = session.scalars(
            select(Service).where(Service.owner == owner, Service.status == "active").order_by(Service.name)
        ).all()
        return [_out(session, row) for row in rows]


def delete(settings: Settings, owner: str, name: str) -> ServiceOut:
    """Mark the service deleted and its replicas stopping; the reconciler stops them and their leases end."""
    with _session(settings, write=True) as session:
        row = _named(session, owner, name)
        row.status, row.deleted_at = "deleted", utcnow()
        for replica in session.scalars(
            select(Replica).where(Replica.service_id == row.id, Replica.status != "stopped")
        ):
            replica.status = "stopping"
        session.flush()
        return _out(session, row)


def logs(settings: Settings, owner: str, name: str) -> dict[str, str]:
    """The newest output of each replica not yet stopped, by replica id."""
    with _session(settings) as session:
        row = _named(session, owner, name)
        replicas = session.scalars(
            select(Replica)
            .where(Replica.service_id == row.id, Replica.status != "stopped")
            .order_by(Replica.created_at)
        ).all()
        return {r.id: r.logs for r in replicas}


# ---- the reconciler's view -------------------------------------------------------------------------


def services_to_reconcile(settings: Settings) -> list[tuple[Service, list[Replica]]]:
    """Active services, and deleted ones with replicas still to stop, each with its replicas not yet stopped."""
    with _session(settings) as session:
        open_ids = select(Replica.service_id).where(Replica.status != "stopped")
        rows = session.scalars(select(Service).where((Service.status == "active") | Service.id.in_(open_ids))).all()
        found = [
            (
                row,
                list(
                    session.scalars(
                        select(Replica)
                        .where(Replica.service_id == row.id, Replica.status != "stopped")
                        .order_by(Replica.created_at)
                    )
                ),
            )
            for row in rows
        ]
        session.expunge_all()
        return found


def replica_ids(settings: Settings, service_id: str) -> list[str]:
    """The service's replica slots not yet stopped."""
    with _session(settings) as session:
        return list(
            session.scalars(select(Replica.id).where(Replica.service_id == service_id, Replica.status != "stopped"))
        )


def add_replica(settings: Settings, service_id: str) -> Replica:
    with _session(settings, write=True) as session:
        row = Replica(
            id=str(uuid.uuid4()),
            service_id=service_id,
            token=secrets.token_hex(32),
            status="pending",
            restarts=0,
            logs="",
            beat_ts=0.0,
            created_at=utcnow(),
        )
        session.add(row)
        session.flush()
        session.expunge(row)
        return row


def load(settings: Settings, replica_id: str) -> tuple[Service, Replica]:
    with _session(settings) as session:
        replica = session.get(Replica, replica_id)
        service = session.get(Service, replica.service_id)
        session.expunge_all()
        return service, replica


def set_status(
    settings: Settings, replica_id: str, status: ReplicaStatus, *, error: str | None = None, restarted: bool = False
) -> None:
    with _session(settings, write=True) as session:
        row = session.get(Replica, replica_id, with_for_update=True)
        if row.status == "stopped" or (row.status == "stopping" and status != "stopped"):
            return  # a stop, once asked for, is never undone
        row.status = status
        row.error = error if error is not None else row.error
        row.restarts += int(restarted)
        if status in ("pending", "stopped"):
            row.host = row.host_port = None
        if status == "stopped":
            row.ended_at = utcnow()


def work_key(replica_id: str) -> str:
    return f"service:{replica_id}"


# ---- a replica's provider ----------------------------------------------------------------------------


def _authorized(session, replica_id: str, token: str) -> Replica:
    row = session.get(Replica, replica_id, with_for_update=True)
    if row is None or not hmac.compare_digest(row.token, token):
        raise Forbidden("unknown replica or wrong replica token", field="token")
    return row


def beat(settings: Settings, replica_id: str, token: str, report: Beat) -> BeatReply:
    """Record a replica's report; tell it to stop unless its service wants it and its job is the one running."""
    store = get_network().store
    running = [j for j in jobs.for_work(store, [work_key(replica_id)]) if j.status == "running"]
    with _session(settings, write=True) as session:
        row = _authorized(session, replica_id, token)
        service = session.get(Service, row.service_id)
        job = running[-1] if running else None
        if (
            row.status in ("stopping", "stopped")
            or service.status != "active"
            or job is None
            or job.provider.lower() != report.provider.lower()
        ):
            return BeatReply(run=False)
        # A restarted platform gives its predecessor's jobs up and dispatches the slot again, maybe to the same
        # provider: the job of the earlier dispatch (its lease ended) must stop, not run on beside the new one.
        if report.dispatch is not None and report.dispatch != jobs.payload(store, job.id).get("dispatch"):
            return BeatReply(run=False)
        row.provider, row.job_id, row.lease_id, row.beat_ts = job.provider, job.id, job.lease_id, time.time()
        if report.logs is not None:
            row.logs = report.logs
        if report.state == "ready":
            if report.host is None or report.host_port is None:
                raise ServiceError("a ready replica reports its host and host_port", field="host")
            row.status, row.host, row.host_port = "live", report.host, report.host_port
        else:
            row.status = "starting"
        return BeatReply(run=True)


def image_stream(settings: Settings, replica_id: str, token: str) -> tuple[int, Iterator[bytes]]:
    """The replica's image tarball (its size and its bytes), for its provider to `docker load`."""
    with _session(settings) as session:
        row = _authorized(session, replica_id, token)
        service = session.get(Service, row.service_id)
        cid, owner = service.image, service.owner
    storage = open_storage(settings)
    return storage.stat(cid, owner).size, storage.open_range(cid, owner)


def live_replicas(settings: Settings, owner: str, name: str, *, public: bool = False) -> tuple[str, list[ReplicaOut]]:
    """The service's id and the replicas the gateway may route to; with ``public``, only a public service's
    (another's private service reads as no service at all)."""
    with _session(settings) as session:
        if public:  # an address in the URL may come in any case
            service = session.scalar(
                select(Service).where(
                    func.lower(Service.owner) == owner.lower(),
                    Service.name == name,
                    Service.status == "active",
                    Service.public.is_(True),
                )
            )
            if service is None:
                raise NotFound(f"no public service {name!r} of {owner}", field="name")
        else:
            service = _named(session, owner, name)
        rows = session.scalars(select(Replica).where(Replica.service_id == service.id, Replica.status == "live")).all()
        now = time.time()
        return service.id, [replica_out(r) for r in rows if fresh(r, now)]

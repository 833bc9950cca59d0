"""Deployed services: validation at deploy, reads for the API and the replicas the gateway may route to.

The replica slots the reconciler drives are :mod:`compute.services.slots`; the reports a replica's provider
sends, :mod:`compute.services.reports`.
"""

from __future__ import annotations

import re
import time
import uuid
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from compute.market.demand import MatchRequest, PriceRange
from compute.market.matching import NoMatchError
from compute.models import aware, utcnow
from compute.network import get_network
from compute.provisions import Resources
from compute.services.errors import ServiceError
from compute.services.image import check_stored_image
from compute.services.models import Replica, Service
from cxmpute.db import migrate, session_scope
from cxmpute.errors import Conflict, NotFound
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


def database(settings: Settings) -> str:
    url = settings.resolved_database_url
    migrate(url)
    return url


def open_session(settings: Settings, write: bool = False) -> AbstractContextManager[Session]:
    """A transaction on the services' database; ``write`` takes SQLite's write lock up front."""
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
    with open_session(settings, write=True) as session:
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
    with open_session(settings) as session:
        return _out(session, _named(session, owner, name))


def list_for(settings: Settings, owner: str) -> list[ServiceOut]:
    with open_session(settings) as session:
        rows = session.scalars(
            select(Service).where(Service.owner == owner, Service.status == "active").order_by(Service.name)
        ).all()
        return [_out(session, row) for row in rows]


def delete(settings: Settings, owner: str, name: str) -> ServiceOut:
    """Mark the service deleted and its replicas stopping; the reconciler stops them and their leases end."""
    with open_session(settings, write=True) as session:
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
    with open_session(settings) as session:
        row = _named(session, owner, name)
        replicas = session.scalars(
            select(Replica)
            .where(Replica.service_id == row.id, Replica.status != "stopped")
            .order_by(Replica.created_at)
        ).all()
        return {r.id: r.logs for r in replicas}


def live_replicas(settings: Settings, owner: str, name: str, *, public: bool = False) -> tuple[str, list[ReplicaOut]]:
    """The service's id and the replicas the gateway may route to; with ``public``, only a public service's
    (another's private service reads as no service at all)."""
    with open_session(settings) as session:
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

"""Provisions: what a provider offers (kind, resources, price per compute-unit-second, availability).

Only the owning provider may change a provision; publishing needs the minimum stake.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import or_, select
from sqlalchemy import update as update_rows
from sqlalchemy.orm import Session

from compute.errors import ComputeError
from compute.ledger import Acct, balance
from compute.market.follow import mark
from compute.models import Provider, Provision, aware, utcnow
from compute.store import Store
from cxmpute.errors import Forbidden, NotFound
from cxmpute.settings import get_settings

Kind = Literal["vm", "container", "function", "inference", "agent"]
KINDS: tuple[str, ...] = ("vm", "container", "function", "inference", "agent")
# "down": set by the platform while the provider's heartbeats have lapsed; its next heartbeat restores it.
Status = Literal["active", "paused", "retired", "down"]


class Resources(BaseModel):
    cpu: int = Field(1, ge=1, le=4096, description="vCPU cores")
    memory_mb: int = Field(1024, ge=1, le=64 * 2**20)
    gpu_count: int = Field(0, ge=0, le=64)
    gpu_model: str = Field("", max_length=64, description="Empty: no GPU, or any model in a request")
    disk_gb: int = Field(0, ge=0, le=2**20)


class ProvisionSpec(BaseModel):
    kind: Kind
    resources: Resources
    shares_capacity_with: str | None = Field(
        None,
        max_length=36,
        description="Id of another of your provisions on the same machine, with the same "
        "resources: the two share that machine's capacity, so what one leases the other no longer offers",
    )
    price_gwei: int = Field(..., gt=0, le=10**12, description="Ask per compute-unit-second, in gwei")
    models: list[str] = Field(default_factory=list, max_length=100, description="Models served (inference)")
    images: list[str] = Field(default_factory=list, max_length=100, description="Allowed images; empty: any")
    region: str = Field("local", max_length=64)
    available_until: datetime | None = Field(None, description="None: available indefinitely")

    @field_validator("available_until")
    @classmethod
    def _future(cls, value: datetime | None) -> datetime | None:
        if value is not None and aware(value) <= utcnow():
            raise ValueError("must be in the future")
        return value


class ProvisionPatch(BaseModel):
    price_gwei: int | None = Field(None, gt=0, le=10**12)
    status: Literal["active", "paused"] | None = None
    models: list[str] | None = Field(None, max_length=100)
    images: list[str] | None = Field(None, max_length=100)
    available_until: datetime | None = None


class ProvisionOut(BaseModel):
    id: str
    provider: str
    kind: str
    resources: Resources
    free: Resources
    price_gwei: int
    models: list[str]
    images: list[str]
    region: str
    available_until: datetime | None
    status: str
    capacity_group: str = Field(description="Provisions of one group share one machine's capacity")
    updated_at: datetime


def out(row: Provision) -> ProvisionOut:
    return ProvisionOut(
        id=row.id,
        provider=row.provider,
        kind=row.kind,
        resources=Resources(
            cpu=row.cpu, memory_mb=row.memory_mb, gpu_count=row.gpu_count, gpu_model=row.gpu_model, disk_gb=row.disk_gb
        ),
        free=Resources.model_construct(
            cpu=row.free_cpu,
            memory_mb=row.free_memory_mb,
            gpu_count=row.free_gpu,
            gpu_model=row.gpu_model,
            disk_gb=row.free_disk_gb,
        ),
        price_gwei=row.price_gwei,
        models=list(row.models),
        images=list(row.images),
        region=row.region,
        available_until=row.available_until,
        status=row.status,
        capacity_group=row.capacity_group or row.id,
        updated_at=row.updated_at,
    )


def capacity_group(session: Session, provision_id: str) -> list[str]:
    """The provisions sharing ``provision_id``'s capacity (itself included), locked in id order: every
    reservation and release takes these locks in this one order, so concurrent ones never wait in a cycle."""
    group = session.scalar(select(Provision.capacity_group).where(Provision.id == provision_id)) or provision_id
    return list(
        session.scalars(
            select(Provision.id)
            .where(or_(Provision.capacity_group == group, Provision.id == provision_id))
            .order_by(Provision.id)
            .with_for_update()
        )
    )


def shift_capacity(session: Session, ids: list[str], r: Resources, sign: int) -> None:
    """Take (``sign`` -1) or give back (+1) ``r`` of the free capacity of every provision in ``ids``."""
    if ids:
        mark(session, ids)
        session.execute(
            update_rows(Provision)
            .where(Provision.id.in_(ids))
            .values(
                free_cpu=Provision.free_cpu + sign * r.cpu,
                free_memory_mb=Provision.free_memory_mb + sign * r.memory_mb,
                free_gpu=Provision.free_gpu + sign * r.gpu_count,
                free_disk_gb=Provision.free_disk_gb + sign * r.disk_gb,
                updated_at=utcnow(),
            )
        )


def create(store: Store, provider: str, spec: ProvisionSpec) -> ProvisionOut:
    if spec.resources.gpu_count and not spec.resources.gpu_model:
        raise ComputeError("a provision with GPUs must name their model", field="resources.gpu_model")
    with store.write() as session:
        if session.get(Provider, provider) is None:
            raise Forbidden("register as a provider before publishing provisions", field="provider")
        staked = balance(session, Acct("stake", provider))
        if staked < get_settings().min_stake_gwei:
            raise Forbidden(
                f"stake of {staked} gwei is below the minimum {get_settings().min_stake_gwei}", field="stake"
            )
        r = spec.resources
        row = Provision(
            id=str(uuid.uuid4()),
            provider=provider,
            kind=spec.kind,
            cpu=r.cpu,
            memory_mb=r.memory_mb,
            gpu_count=r.gpu_count,
            gpu_model=r.gpu_model,
            disk_gb=r.disk_gb,
            free_cpu=r.cpu,
            free_memory_mb=r.memory_mb,
            free_gpu=r.gpu_count,
            free_disk_gb=r.disk_gb,
            price_gwei=spec.price_gwei,
            models=spec.models,
            images=spec.images,
            region=spec.region,
            available_until=spec.available_until,
            status="active",
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        row.capacity_group = row.id
        if spec.shares_capacity_with is not None:
            _join(session, provider, row, spec.shares_capacity_with)
        session.add(row)
        session.flush()
        return out(row)


def _join(session: Session, provider: str, row: Provision, other_id: str) -> None:
    """Put the new provision ``row`` in the capacity group of ``other_id``, with the group's free capacity."""
    field = "shares_capacity_with"
    other = session.get(Provision, other_id)
    if other is None or other.provider != provider:
        raise NotFound(f"you have no provision {other_id} to share capacity with", field=field)
    if other.status == "retired":
        raise ComputeError(f"provision {other_id} is retired", field=field, status_code=409)
    if (other.cpu, other.memory_mb, other.gpu_count, other.gpu_model, other.disk_gb) != (
        row.cpu,
        row.memory_mb,
        row.gpu_count,
        row.gpu_model,
        row.disk_gb,
    ):
        raise ComputeError(
            f"resources must equal those of provision {other_id}, whose capacity it shares", field="resources"
        )
    capacity_group(session, other_id)  # holds the group still while the copy is taken
    session.refresh(other)
    row.capacity_group = other.capacity_group or other.id
    row.free_cpu, row.free_memory_mb = other.free_cpu, other.free_memory_mb
    row.free_gpu, row.free_disk_gb = other.free_gpu, other.free_disk_gb


def _owned(session, provider: str, provision_id: str, *, lock: bool = False) -> Provision:
    row = session.get(Provision, provision_id, with_for_update=lock)
    if row is None:
        raise NotFound(f"no provision {provision_id}", field="provision_id")
    if row.provider != provider:
        raise Forbidden("provision belongs to another provider", field="provision_id")
    return row


def update(store: Store, provider: str, provision_id: str, patch: ProvisionPatch) -> ProvisionOut:
    with store.write() as session:
        row = _owned(session, provider, provision_id, lock=True)
        if row.status == "retired":
            raise ComputeError("provision is retired", field="provision_id", status_code=409)
        for name, value in patch.model_dump(exclude_unset=True).items():
            if name == "available_until" and value is not None and aware(value) <= utcnow():
                raise ComputeError("must be in the future", field="available_until")
            setattr(row, name, value)
        row.updated_at = utcnow()
        session.flush()
        return out(row)


def retire(store: Store, provider: str, provision_id: str) -> ProvisionOut:
    """Withdraw from the market; running leases keep their capacity until they end."""
    with store.write() as session:
        row = _owned(session, provider, provision_id, lock=True)
        row.status = "retired"
        row.updated_at = utcnow()
        session.flush()
        return out(row)


def get(store: Store, provision_id: str) -> ProvisionOut:
    with store.read() as session:
        row = session.get(Provision, provision_id)
        if row is None:
            raise NotFound(f"no provision {provision_id}", field="provision_id")
        return out(row)


def list_for(store: Store, provider: str) -> list[ProvisionOut]:
    with store.read() as session:
        rows = session.scalars(
            select(Provision).where(Provision.provider == provider).order_by(Provision.created_at)
        ).all()
        return [out(row) for row in rows]


def browse(
    store: Store, kind: str | None = None, status: str | None = None, limit: int = 50, offset: int = 0
) -> list[ProvisionOut]:
    """The public offer book: provisions by ascending price, optionally of one kind or status."""
    with store.read() as session:
        stmt = select(Provision)
        if kind:
            stmt = stmt.where(Provision.kind == kind)
        if status:
            stmt = stmt.where(Provision.status == status)
        rows = session.scalars(stmt.order_by(Provision.price_gwei, Provision.id).limit(limit).offset(offset)).all()
        return [out(row) for row in rows]

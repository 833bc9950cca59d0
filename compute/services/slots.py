"""Replica slots as the reconciler drives them (:mod:`compute.services.reconciler`): the services to reconcile
with their replicas not yet stopped, slots added and moved between states (a stop, once asked for, is never
undone), and the key that names a slot's work."""

from __future__ import annotations

import secrets
import uuid

from sqlalchemy import select

from compute.models import utcnow
from compute.services.models import Replica, Service
from compute.services.registry import ReplicaStatus, open_session
from cxmpute.settings import Settings


def services_to_reconcile(settings: Settings) -> list[tuple[Service, list[Replica]]]:
    """Active services, and deleted ones with replicas still to stop, each with its replicas not yet stopped."""
    with open_session(settings) as session:
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
    with open_session(settings) as session:
        return list(
            session.scalars(select(Replica.id).where(Replica.service_id == service_id, Replica.status != "stopped"))
        )


def add_replica(settings: Settings, service_id: str) -> Replica:
    with open_session(settings, write=True) as session:
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
    with open_session(settings) as session:
        replica = session.get(Replica, replica_id)
        service = session.get(Service, replica.service_id)
        session.expunge_all()
        return service, replica


def set_status(
    settings: Settings, replica_id: str, status: ReplicaStatus, *, error: str | None = None, restarted: bool = False
) -> None:
    with open_session(settings, write=True) as session:
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

"""The reports a replica's provider sends (its address, that it still runs, its logs), which are also where it
learns to stop, and the image it fetches to run; each is the replica's own, proven by its token."""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel, Field

from compute.network import get_network
from compute.services.errors import ServiceError
from compute.services.models import Replica, Service
from compute.services.registry import open_session
from compute.services.slots import work_key
from compute.worker import jobs
from cxmpute.errors import Forbidden
from cxmpute.settings import Settings
from stxrage import open_storage


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


def _authorized(session, replica_id: str, token: str) -> Replica:
    row = session.get(Replica, replica_id, with_for_update=True)
    if row is None or not hmac.compare_digest(row.token, token):
        raise Forbidden("unknown replica or wrong replica token", field="token")
    return row


def beat(settings: Settings, replica_id: str, token: str, report: Beat) -> BeatReply:
    """Record a replica's report; tell it to stop unless its service wants it and its job is the one running."""
    store = get_network().store
    running = [j for j in jobs.for_work(store, [work_key(replica_id)]) if j.status == "running"]
    with open_session(settings, write=True) as session:
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
    with open_session(settings) as session:
        row = _authorized(session, replica_id, token)
        service = session.get(Service, row.service_id)
        cid, owner = service.image, service.owner
    storage = open_storage(settings)
    return storage.stat(cid, owner).size, storage.open_range(cid, owner)

"""Pushing jobs to provider workers over one long-lived stream per connected provider, fed from the database.

Jobs are recorded by whichever process dispatched them (a run executor, the API itself), so an API process
learns of new work from the platform database: one poller per process, running while any provider is
connected to it, looks every few milliseconds — in one indexed query — for queued jobs of the providers
connected here, and — by primary key — for the end of the jobs it delivered. A job is claimed (``running``)
in the same transaction that picks it for delivery and pushed with its payload, so the worker starts it
without a round trip. Each API replica serves the providers connected to it; a job is claimed once whichever
replica sees it first.

A delivery can be lost between the claim and the worker: a job still in this process's outbox when the
stream closes goes straight back to the queue; one written to a connection that died before the worker read
it is put back when the worker reconnects, since the worker then declares every job it holds (``held``) and
the platform requeues the provider's other ``running`` jobs — it never saw them, so nothing ran and nothing
is owed. A worker that never comes back stops heartbeating, and its jobs fail over as before.

The stream also carries stop orders: a delivered job that was abandoned (cancelled by its owner, or given up
on by its dispatcher) is announced to its worker, which cancels the handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

from compute.models import Provider
from compute.store import Store
from compute.worker import jobs
from compute.worker.jobs import Claimed
from cxmpute.logging import get_logger

log = get_logger(__name__)
POLL_S = (0.004, 0.02)  # how often the database is asked: while jobs come and go, and at most while none do
PING_S = 10.0  # a quiet stream says so this often: dead connections surface, the worker's read timeout rests
MAX_HELD = 256  # Offer.concurrency's bound


class StreamIn(BaseModel):
    concurrency: int = Field(4, ge=1, le=MAX_HELD, description="Jobs the worker runs at once")
    held: list[str] = Field(
        default_factory=list,
        max_length=MAX_HELD,
        description="Jobs the worker is running now (after a reconnect); the provider's other "
        "running jobs never reached it and are queued again",
    )


class Push(BaseModel):
    """One line of the stream: a job to start, a job to stop, or a sign of life."""

    type: Literal["job", "stop", "ping"]
    job: Claimed | None = None
    id: str | None = None


@dataclass(eq=False)
class _Connection:
    provider: str
    concurrency: int
    held: set[str]
    outbox: asyncio.Queue[Push | None] = field(default_factory=asyncio.Queue)
    closed: bool = False

    @property
    def free(self) -> int:
        return self.concurrency - len(self.held)


class Hub:
    """The providers connected to this process and the one poller that feeds them."""

    def __init__(self, store: Store):
        self.store = store
        self.connections: dict[str, _Connection] = {}
        self.orphans: dict[str, list[str]] = {}  # provider → jobs claimed for it that never left this process
        self._poller: asyncio.Task | None = None

    async def stream(self, provider: str, terms: StreamIn) -> AsyncIterator[bytes]:
        """The NDJSON lines of one provider's stream, from the moment it connects until it goes away."""
        old = self.connections.pop(provider, None)
        if old is not None:  # the worker reconnected before this process saw its old stream end
            self._close(old)
        held, requeued = await asyncio.to_thread(self._reconcile, provider, terms.held)
        if requeued:
            log.info("jobs pushed to %s that never reached it are queued again: %s", provider, requeued)
        conn = _Connection(provider, terms.concurrency, set(held))
        self.connections[provider] = conn
        self._ensure_poller()
        try:
            yield Push(type="ping").model_dump_json(exclude_none=True).encode() + b"\n"
            while True:
                try:
                    push = await asyncio.wait_for(conn.outbox.get(), PING_S)
                except TimeoutError:
                    push = Push(type="ping")
                if push is None:
                    return
                yield push.model_dump_json(exclude_none=True).encode() + b"\n"
        finally:
            if self.connections.get(provider) is conn:
                del self.connections[provider]
            self._close(conn)

    def _reconcile(self, provider: str, held: list[str]) -> tuple[list[str], list[str]]:
        """The provider's running jobs its worker holds, and those it does not (queued again). Ids of other
        providers' jobs, or of jobs no longer running, are ignored."""
        running = jobs.running_on(self.store, provider)
        return (
            [j for j in running if j in set(held)],
            jobs.release(self.store, provider, [j for j in running if j not in set(held)]),
        )

    def _close(self, conn: _Connection) -> None:
        """No more pushes to ``conn``; jobs still in its outbox were never written: back to the queue."""
        conn.closed = True
        while not conn.outbox.empty():
            push = conn.outbox.get_nowait()
            if push is not None and push.job is not None:
                self.orphans.setdefault(conn.provider, []).append(push.job.id)
        conn.outbox.put_nowait(None)

    def _ensure_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name="cxmpute-job-delivery")

    async def _poll(self) -> None:
        pause = POLL_S[0]
        while self.connections or self.orphans:
            try:
                busy = await self._tick()
            except Exception:  # the database may be briefly unavailable: keep serving, slower
                log.exception("job delivery poll failed")
                busy, pause = False, 0.5
            # Every few ms while jobs come and go; slower, up to POLL_S[1], while nothing does.
            pause = POLL_S[0] if busy else min(pause * 1.5, POLL_S[1])
            await asyncio.sleep(pause)

    async def _tick(self) -> bool:
        """One look at the database; whether anything was delivered or ended."""
        if self.orphans:
            orphans, self.orphans = self.orphans, {}
            for provider, ids in orphans.items():
                await asyncio.to_thread(jobs.release, self.store, provider, ids)
        conns = [c for c in self.connections.values() if not c.closed]
        if not conns:
            return False
        held = [job_id for c in conns for job_id in c.held]
        # Every connected provider is asked for, whatever its free slots now: slots the status look frees below
        # are filled in this same tick.
        rows = await asyncio.to_thread(jobs.look, self.store, [c.provider for c in conns], held)
        statuses = {job_id: status for job_id, _, status in rows}
        busy = False
        for conn in conns:
            for job_id in list(conn.held):
                status = statuses.get(job_id)
                if status == "running":
                    continue
                busy = True
                conn.held.discard(job_id)  # its slot is free again
                if status == "abandoned":
                    conn.outbox.put_nowait(Push(type="stop", id=job_id))
        picked: list[str] = []
        provider_of: dict[str, str] = {}
        room = {c.provider: c.free for c in conns}
        for job_id, provider, status in rows:
            if status == "queued" and room.get(provider, 0) > 0:
                room[provider] -= 1
                picked.append(job_id)
                provider_of[job_id] = provider
        if not picked:
            return busy
        for claimed in await asyncio.to_thread(jobs.deliver, self.store, picked):
            provider = provider_of[claimed.id]
            conn = self.connections.get(provider)
            if conn is None or conn.closed:  # it went away while the claim was being written
                self.orphans.setdefault(provider, []).append(claimed.id)
                continue
            conn.held.add(claimed.id)
            conn.outbox.put_nowait(Push(type="job", job=claimed))
        return True


def is_provider(store: Store, address: str) -> bool:
    with store.read() as session:
        return session.get(Provider, address) is not None


_hubs: dict[int, Hub] = {}


def hub(store: Store) -> Hub:
    """This process's hub for ``store`` (one poller per process and database)."""
    found = _hubs.get(id(store))
    if found is None:
        found = _hubs[id(store)] = Hub(store)
    return found

"""Storage upkeep, run by the platform itself: every few seconds, check the nodes, audit a sample of fragments
and rebuild whatever is missing (:meth:`~stxrage.integrity.Integrity.maintain`), so a lost node's blocks are
copied again without anyone running ``cxmpute storage maintain``.

Every platform API process runs the loop, and one at a time holds the upkeep: a row of the catalog names the
holder and until when it holds, renewed while its rounds run; another replica takes over once it lapses (a
holder that stops gives it up at once), so two replicas never rebuild the same block together.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable

from sqlalchemy import or_, update

from cxmpute.db import session_scope
from cxmpute.loops import LoopService
from cxmpute.settings import Settings, get_settings
from stxrage import open_storage
from stxrage.catalog import UpkeepRow, insert_ignore
from stxrage.models import MaintenanceReport, NodeInfo
from stxrage.store import Storage

NAME = "storage"
HOLD_ROUNDS = 4  # a holder silent for this many rounds has gone: another replica takes over


def take(database_url: str, holder: str, hold_s: float, now: float | None = None) -> bool:
    """Hold the upkeep for ``hold_s`` more seconds, if no one else holds it now; whether ``holder`` does."""
    now = time.time() if now is None else now
    with session_scope(database_url, immediate=True) as s:
        insert_ignore(s, UpkeepRow, [{"name": NAME, "holder": holder, "until_ts": now + hold_s}])
        taken = s.execute(
            update(UpkeepRow)
            .where(UpkeepRow.name == NAME, or_(UpkeepRow.holder == holder, UpkeepRow.until_ts < now))
            .values(holder=holder, until_ts=now + hold_s)
        )
        return taken.rowcount == 1


def give_up(database_url: str, holder: str) -> None:
    with session_scope(database_url, immediate=True) as s:
        s.execute(update(UpkeepRow).where(UpkeepRow.name == NAME, UpkeepRow.holder == holder).values(until_ts=0.0))


class StorageUpkeep(LoopService):
    name = "storage-upkeep"

    def __init__(self, settings: Settings | None = None, on_evicted: Callable[[list[NodeInfo]], object] | None = None):
        super().__init__()
        self.settings = settings or get_settings()
        self.on_evicted = on_evicted  # e.g. slash the evicted nodes' providers (the platform's ledger is not ours)
        self.holder = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.held = False
        self.last: MaintenanceReport | None = None

    def interval(self) -> float:
        return self.settings.storage_upkeep_s

    @property
    def hold_s(self) -> float:
        return HOLD_ROUNDS * self.interval()

    def storage(self) -> Storage:
        return open_storage(self.settings)

    async def run_once(self) -> None:
        store = await asyncio.to_thread(self.storage)
        nodes = await asyncio.to_thread(store.nodes)
        if not any(not n.url.startswith("file://") for n in nodes):
            return  # the local directory is the only node: nothing can be copied elsewhere
        self.held = await asyncio.to_thread(take, store.database_url, self.holder, self.hold_s)
        if not self.held:
            return
        round_ = asyncio.ensure_future(asyncio.to_thread(store.maintain, self.settings.storage_upkeep_sample))
        # A long round (many blocks to rebuild) keeps the upkeep: renewed every interval until it ends.
        while not (await asyncio.wait({round_}, timeout=self.interval()))[0]:
            self.held = await asyncio.to_thread(take, store.database_url, self.holder, self.hold_s)
        self.last = report = round_.result()
        if report.audit.evicted and self.on_evicted is not None:
            await asyncio.to_thread(self.on_evicted, report.audit.evicted)
        repair = report.repair
        if report.nodes_down or report.audit.failed or repair.fragments_rebuilt or repair.lost:
            self.log.warning(
                "storage upkeep: nodes down %s, failed audits %d, evicted %s, fragments rebuilt %d, degraded %d, "
                "lost %d",
                report.nodes_down,
                len(report.audit.failed),
                [n.id for n in report.audit.evicted],
                repair.fragments_rebuilt,
                len(repair.degraded),
                len(repair.lost),
            )

    async def on_stop(self) -> None:
        if self.held:  # another replica need not wait for the hold to lapse
            await asyncio.to_thread(give_up, self.storage().database_url, self.holder)
            self.held = False

"""Accepting job results in batches: the results providers report at the same moment share one transaction.

Each batch locks its jobs (in id order, before their leases, as every job writer does), refuses a result for a
job that is not ``running`` or not the reporter's, closes the accepted jobs' leases with their metered seconds in
a few statements (:mod:`compute.market.closing`) and records the results, then commits once. Results are written
through the process's group-commit writer (:mod:`compute.market.group_commit`): under a burst of finishing jobs a
result costs a share of one commit and a handful of statements instead of a transaction of its own.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update

from compute.market import closing
from compute.market.closing import Closing
from compute.market.group_commit import GroupCommit, Ticket
from compute.models import Job, utcnow
from compute.receipts import Domain
from compute.store import Store
from compute.worker import turns
from compute.worker.jobs import Completion, JobOut
from cxmpute.db import get_engine
from cxmpute.errors import Conflict, CxmputeError, Forbidden, NotFound

_j = Job.__table__.c
LOCK_JOBS = select(Job.__table__).where(_j.id.in_(bindparam("ids", expanding=True))).order_by(_j.id).with_for_update()
SET_RESULT = (
    update(Job.__table__)
    .where(_j.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        result=bindparam("b_result"),
        error=bindparam("b_error"),
        error_status=bindparam("b_error_status"),
        seconds=bindparam("b_seconds"),
        cost_gwei=bindparam("b_cost"),
        finished_at=bindparam("b_finished"),
        started_ts=bindparam("b_started"),
    )
)
FreedCallback = Callable[[dict[str, list[int]]], None]


@dataclass(eq=False)
class _Ticket(Ticket):
    """One provider's report of one job; its result is the job as accepted."""

    job_id: str
    provider: str
    report: Completion
    freed: FreedCallback | None = None


class Results(GroupCommit[_Ticket]):
    """The results writer of one database in this process."""

    def __init__(self, store: Store, domain: Domain):
        super().__init__()
        self.store, self.domain = store, domain
        self._engine = get_engine(store.url)

    def accept(self, job_id: str, provider: str, report: Completion, freed: FreedCallback | None = None) -> JobOut:
        ticket = self.submit(_Ticket(job_id, provider, report, freed))
        if ticket.error is not None:
            raise ticket.error
        return ticket.result

    def write(self, batch: list[_Ticket]) -> None:
        with turns.writing(self.store), self._engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock up front, as Store.write takes it
            rows = {
                row.id: row._asdict() for row in conn.execute(LOCK_JOBS, {"ids": sorted({t.job_id for t in batch})})
            }
            accepted = [
                (ticket, row)
                for ticket in batch
                for row in [_check(ticket, rows.get(ticket.job_id))]
                if row is not None
            ]
            closed = closing.close(
                conn,
                self.domain,
                [
                    Closing(
                        row["lease_id"], ticket.provider, max(1, math.ceil(ticket.report.seconds)), f"job:{row['id']}"
                    )
                    for ticket, row in accepted
                ],
            )
            done: list[tuple[_Ticket, JobOut]] = []
            for (ticket, row), outcome in zip(accepted, closed.outcomes):
                if isinstance(outcome, CxmputeError):
                    ticket.finish(error=outcome)
                    continue
                report = ticket.report
                row.update(
                    status="done" if report.ok else "failed",
                    result=report.result,
                    error=report.error,
                    error_status=report.error_status,
                    seconds=report.seconds,
                    cost_gwei=outcome.amount_gwei,
                    finished_at=utcnow(),
                    started_ts=report.started_ts or row["started_ts"],
                )
                done.append((ticket, JobOut.model_validate({name: row[name] for name in JobOut.model_fields})))
            if done:
                conn.execute(
                    SET_RESULT,
                    [
                        {
                            "b_id": job.id,
                            "b_status": job.status,
                            "b_result": job.result,
                            "b_error": job.error,
                            "b_error_status": job.error_status,
                            "b_seconds": job.seconds,
                            "b_cost": job.cost_gwei,
                            "b_finished": job.finished_at,
                            "b_started": job.started_ts,
                        }
                        for _, job in done
                    ],
                )
            conn.commit()
        for freed in {ticket.freed for ticket, _ in done if ticket.freed is not None}:
            freed(closed.free)
        for ticket, job in done:
            ticket.finish(result=job)


def _check(ticket: _Ticket, row: dict | None) -> dict | None:
    """The job's row if this report may be accepted, else None with the ticket refused. A job accepted here is
    marked so a second report of it in the same batch is refused as any later one is."""
    if row is None:
        ticket.finish(error=NotFound(f"no job {ticket.job_id}", field="job_id"))
    elif row["provider"] != ticket.provider:
        ticket.finish(error=Forbidden("this job was dispatched to another provider", field="job_id"))
    elif row["status"] != "running":
        ticket.finish(error=Conflict(f"job is {row['status']}; its result is not accepted", field="job_id"))
    else:
        row["status"] = "reported"
        return row
    return None


_writers: weakref.WeakKeyDictionary[Store, Results] = weakref.WeakKeyDictionary()
_writers_lock = threading.Lock()


def results(store: Store, domain: Domain) -> Results:
    """The results writer of ``store`` in this process."""
    with _writers_lock:
        found = _writers.get(store)
        if found is None or found.domain != domain:
            found = _writers[store] = Results(store, domain)
        return found

"""A run executor: claims workflow runs from the durable queue (:mod:`flows.queue`) and executes them.

``cxmpute up`` starts one; ``cxmpute executor start`` adds more on any machine that reaches the platform
database and the Prefect API (and shares Prefect's result storage, where node outputs persist). The API
process only queues runs.

Each claimed run executes in a thread of this process as its Prefect flow run. The executor renews its
claims while they run; if it dies, the claims lapse and another executor (or this one restarted) runs them
again: nodes that had completed are not executed again (their outputs persist under a key scoped to the run)
and a node that was on a provider is adopted, not dispatched twice (its work key is stable). A run the
executor cannot carry on with because Prefect is away is handed back with a backoff and taken again later.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from uuid import UUID

import httpx
from prefect import Flow
from prefect.client.schemas.objects import FlowRun
from prefect.context import SettingsContext, get_settings_context
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.flow_engine import run_flow
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, PREFECT_UI_URL, Settings
from prefect.states import Cancelled

from cxmpute.db import migrate, session_scope
from cxmpute.logging import get_logger
from cxmpute.settings import get_settings
from flows import cancellation, prefect_api, queue
from flows.engine import compile_workflow, engine_parameters
from flows.run_errors import RunLost

log = get_logger(__name__)
MAX_CLAIMS = 20  # a run taken this many times without ending is given up (left as Prefect last saw it)
UNREACHABLE = (httpx.HTTPError, PrefectHTTPStatusError, OSError)


class Executor:
    def __init__(self, concurrency: int | None = None, database_url: str | None = None) -> None:
        self.concurrency = concurrency or get_settings().executor_concurrency
        self._url = database_url
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.started_at = datetime.now(UTC)
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="cxmpute-run")
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._lost: set[str] = set()
        self._derived: Settings | None = None
        self._derived_from: Settings | None = None
        self.executed = 0

    @property
    def url(self) -> str:
        # Resolved on each use, so an executor serving a test session follows the database the test points at.
        return self._url or get_settings().resolved_database_url

    def running(self) -> list[str]:
        with self._lock:
            return sorted(self._running)

    def stop(self) -> None:
        self._stop.set()

    def serve(self) -> None:
        """Claim and execute runs until :meth:`stop`; then wait for the runs in flight."""
        settings = get_settings()
        ttl, poll = settings.executor_claim_ttl_s, settings.executor_poll_s
        # Claims are renewed from a thread of their own: a claim loop slowed by a busy database or a busy
        # process must not let them lapse while their runs are alive.
        renewer = threading.Thread(target=self._keep_claims, args=(ttl,), name="run-claims", daemon=True)
        renewer.start()
        cancel_every = min(0.2, ttl / 5)
        next_cancel_check = 0.0
        while not self._stop.is_set():
            try:
                migrate(self.url)
                now = time.monotonic()
                if now >= next_cancel_check:
                    self._check_cancels()
                    next_cancel_check = now + cancel_every
                claimed = self._claim(ttl)
            except Exception:  # the database away for a moment: keep the loop, say it once per failure
                log.exception("run executor %s could not reach the platform database", self.id)
                self._stop.wait(1.0)
                continue
            if not claimed:
                self._stop.wait(poll)
        self._pool.shutdown(wait=True)
        renewer.join(ttl)
        try:
            with session_scope(self.url) as session:
                queue.leave(session, self.id)
        except Exception:  # noqa: BLE001 - its heartbeat row ages out anyway
            log.warning("run executor %s could not remove its heartbeat row", self.id)

    def _keep_claims(self, ttl: float) -> None:
        while True:
            try:
                migrate(self.url)
                self._renew(ttl)
            except Exception:  # noqa: BLE001 - retried at the next beat; the claims last a whole TTL
                log.exception("run executor %s could not renew its claims", self.id)
            if self._stop.is_set() and not self.running():
                return
            time.sleep(ttl / 5)

    def _claim(self, ttl: float) -> bool:
        free = self.concurrency - len(self._running)
        if free <= 0:
            return False
        with session_scope(self.url) as session:
            if not queue.waiting(session):
                return False
        with session_scope(self.url, immediate=True) as session:
            claims = queue.claim(session, self.id, free, ttl)
        for claim in claims:
            with self._lock:
                self._running.add(claim.id)
            self._pool.submit(self._execute, claim)
        return bool(claims)

    def _renew(self, ttl: float) -> None:
        running = self.running()
        with session_scope(self.url) as session:
            lost = queue.renew(session, self.id, running, ttl)
            queue.beat(
                session, self.id, socket.gethostname(), os.getpid(), self.concurrency, len(running), self.started_at
            )
        for run_id in lost - self._lost:
            # Another executor took it while this one was too slow to renew: it now owns the run, and this one
            # stops executing it (its nodes leave without recording anything) and leaves its queue state alone.
            log.warning("run executor %s lost its claim on run %s to another executor", self.id, run_id)
            cancellation.lose(run_id)
        self._lost |= lost

    def _check_cancels(self) -> None:
        running = self.running()
        if not running:
            return
        with session_scope(self.url) as session:
            asked = queue.cancelling(session, self.id, running)
        for run_id in asked:
            if not cancellation.requested(run_id):
                log.info("cancelling run %s", run_id)
                cancellation.request(run_id)
                _cancel_network_work(run_id)

    def _execute(self, claim: queue.Claim) -> None:
        try:
            self._run(claim)
        except Exception:
            log.exception("run %s failed in its executor", claim.id)
            self._hand_back(claim, "an unexpected error in the executor")
        finally:
            cancellation.forget(claim.id)
            with self._lock:
                self._running.discard(claim.id)
                self._lost.discard(claim.id)
            self.executed += 1

    def _run(self, claim: queue.Claim) -> None:
        run_id = claim.id
        if claim.status == "cancelling":  # its owner cancelled it while its last executor was gone
            cancellation.request(run_id)
            _cancel_network_work(run_id)
            if claim.flow_run_id is None:  # it never started: nothing in Prefect to stop
                self._finish(run_id)
                return
        compiled = compile_workflow(claim.parameters["document"])
        try:
            flow_run = self._flow_run(claim, compiled.flow)
        except ObjectNotFound:
            log.warning("run %s: its flow run is unknown to the Prefect API; dropping it from the queue", run_id)
            self._finish(run_id)
            return
        except UNREACHABLE as exc:
            self._hand_back(claim, f"the Prefect API is unreachable ({type(exc).__name__})")
            return
        if flow_run.state is not None and flow_run.state.type.value in ("COMPLETED", "FAILED", "CANCELLED"):
            self._finish(run_id)  # it ended before its last executor could record so
            return
        if (
            cancellation.requested(run_id)
            and flow_run.state is not None
            and (flow_run.state.is_scheduled() or flow_run.state.is_pending())
        ):
            self._mark_cancelled(flow_run.id)
            self._finish(run_id)
            return
        try:
            with self._engine_settings():
                state = run_flow(
                    compiled.flow,
                    flow_run=flow_run,
                    parameters=engine_parameters(claim.parameters),
                    return_type="state",
                )
        except UNREACHABLE as exc:
            self._hand_back(claim, f"the Prefect API became unreachable ({type(exc).__name__})")
            return
        except RunLost:
            log.warning("run %s left to the executor that took it over", run_id)
            return
        if cancellation.requested(run_id):
            self._mark_cancelled(flow_run.id)
        elif state.is_crashed() and claim.claims < MAX_CLAIMS:
            self._hand_back(claim, state.message or "the run crashed")
            return
        self._finish(run_id)

    def _engine_settings(self) -> SettingsContext:
        """The settings runs execute under, derived once from the process's (deriving them costs ~0.2 s of CPU):
        no Prefect UI is served (the builder shows runs), so an empty UI URL keeps the engine from logging a
        "View at" link to a page that does not exist; and no flow-run heartbeats, which cost each run up to a
        second waiting for the heartbeat thread to end, while the queue's claims already tell a live executor
        from a dead one."""
        current = get_settings_context()
        with self._lock:
            if self._derived_from is not current.settings:
                self._derived = current.settings.copy_with_update(
                    updates={PREFECT_UI_URL: "", PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
                )
                self._derived_from = current.settings
            return SettingsContext(profile=current.profile, settings=self._derived)

    def _flow_run(self, claim: queue.Claim, flow: Flow) -> FlowRun:
        """The run's Prefect flow run: read, or created by the first executor to claim the run. Created under the
        run's id as idempotency key, so an executor that dies between creating and recording it leaves the next
        one the same flow run, not a second."""
        if claim.flow_run_id is not None:
            return prefect_api.client().read_flow_run(UUID(claim.flow_run_id))
        flow_run = prefect_api.create_flow_run(flow, claim.name, claim.parameters, claim.tags, idempotency_key=claim.id)
        with session_scope(self.url) as session:
            queue.record_flow_run(session, claim.id, self.id, str(flow_run.id))
        return flow_run

    def _mark_cancelled(self, flow_run_id: UUID) -> None:
        try:
            prefect_api.client().set_flow_run_state(
                flow_run_id, Cancelled(message="cancelled by its owner"), force=True
            )
        except UNREACHABLE:
            log.warning("could not record flow run %s as cancelled in the Prefect API", flow_run_id)

    def _finish(self, run_id: str) -> None:
        with session_scope(self.url) as session:
            queue.finish(session, run_id, self.id)

    def _hand_back(self, claim: queue.Claim, why: str) -> None:
        retry_in = min(30.0, 0.5 * 2 ** min(claim.claims, 6))
        log.warning("run %s handed back to the queue (retry in %.1fs): %s", claim.id, retry_in, why)
        with session_scope(self.url) as session:
            queue.release(session, claim.id, self.id, retry_in)


def _cancel_network_work(run_id: str) -> None:
    """Stop the run's nodes on providers: their jobs end, leases close as cancelled and escrow comes back."""
    from compute.network import get_network
    from compute.worker import jobs

    try:
        jobs.cancel_work(get_network().store, f"{run_id}:")
    except Exception:  # noqa: BLE001 - the run still stops: its nodes see the request and end
        log.exception("could not cancel the provider jobs of run %s", run_id)

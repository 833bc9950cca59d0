"""Waiting for jobs to end: one look at every job this process waits on, every few milliseconds.

Dispatchers in this process (any number, on any event loop) register the jobs they wait on; one thread reads
the status of all of them in one primary-key query while any is registered, and wakes the waiters of those
that left ``queued``/``running``: every few milliseconds while jobs come and go, less often while the jobs in
flight run on (long jobs need no millisecond wake-up). Idle, it sleeps until the next registration.
"""

from __future__ import annotations

import asyncio
import threading
import time

from compute.store import Store
from compute.worker import jobs
from cxmpute.logging import get_logger

log = get_logger(__name__)
POLL_S = (0.004, 0.05)  # between looks: while jobs come and go, and at most while those in flight run on
SEEN = 65536


class JobWatcher:
    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.Lock()
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future]]] = {}
        self._registered = threading.Event()
        self._new = False  # a job not seen before was registered since the last look
        self._seen: dict[str, None] = {}  # jobs registered lately, oldest first (waiters return every 0.5 s)
        self._thread: threading.Thread | None = None

    async def wait(self, job_id: str, timeout: float) -> bool:
        """Until the job ends (True) or ``timeout`` seconds pass (False)."""
        loop = asyncio.get_running_loop()
        entry = (loop, loop.create_future())
        with self._lock:
            if job_id not in self._seen:
                self._new = True
                self._seen[job_id] = None
                if len(self._seen) > SEEN:
                    del self._seen[next(iter(self._seen))]
            self._waiters.setdefault(job_id, []).append(entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cxmpute-job-watcher", daemon=True)
                self._thread.start()
        self._registered.set()
        try:
            done, _ = await asyncio.wait({entry[1]}, timeout=timeout)
            return bool(done)
        finally:
            with self._lock:
                waiting = self._waiters.get(job_id, [])
                if entry in waiting:
                    waiting.remove(entry)
                if not waiting:
                    self._waiters.pop(job_id, None)

    def _run(self) -> None:
        pause = POLL_S[0]
        while True:
            with self._lock:
                ids, fresh, self._new = list(self._waiters), self._new, False
                if not ids:
                    self._registered.clear()
            if not ids:
                self._registered.wait()
                pause = POLL_S[0]
                continue
            try:
                statuses = jobs.statuses(self.store, ids)
            except Exception:  # the database may be briefly unavailable; the waiters' timeouts pace them
                log.exception("job watcher could not read job statuses")
                time.sleep(0.25)
                continue
            ended = [job_id for job_id in ids if statuses.get(job_id) not in jobs.OPEN]
            if ended:
                with self._lock:
                    woken = [entry for job_id in ended for entry in self._waiters.pop(job_id, [])]
                for loop, future in woken:
                    try:
                        loop.call_soon_threadsafe(_resolve, future)
                    except RuntimeError:  # its event loop has closed: nobody waits any more
                        pass
            pause = POLL_S[0] if ended or fresh else min(pause * 1.5, POLL_S[1])
            time.sleep(pause)


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


_watchers: dict[int, JobWatcher] = {}
_lock = threading.Lock()


def watcher(store: Store) -> JobWatcher:
    """This process's watcher of jobs in ``store``."""
    with _lock:
        found = _watchers.get(id(store))
        if found is None:
            found = _watchers[id(store)] = JobWatcher(store)
        return found

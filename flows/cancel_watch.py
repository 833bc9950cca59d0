"""The work of a run's nodes stopped when the run must stop: its owner cancelled it, or this process lost it to
another executor (see :mod:`flows.cancellation`). One thread per process looks for such runs and cancels the work
of their nodes; a lost run's nodes leave without recording anything."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Iterator
from typing import Any

from flows import cancellation
from flows.run_errors import NodeFailed, RunLost

CANCEL_POLL_S = 0.1


class _CancelWatch:
    """One thread per process looks for cancelled runs and cancels the work of their nodes. Each node runs
    on an event loop of its own thread; a poll per node would wake every waiting node ten times a second,
    which at a width of hundreds of nodes costs the run more CPU than its nodes' own work."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._work: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Task]]] = {}
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watching(self, run_id: str, task: asyncio.Task) -> Iterator[None]:
        entry = (asyncio.get_running_loop(), task)
        with self._changed:
            self._work.setdefault(run_id, set()).add(entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._poll, name="cxmpute-cancel-watch", daemon=True)
                self._thread.start()
            self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                entries = self._work.get(run_id)
                if entries is not None:
                    entries.discard(entry)
                    if not entries:
                        del self._work[run_id]

    def _poll(self) -> None:
        while True:
            with self._changed:
                while not self._work:  # asleep while no node runs
                    self._changed.wait()
            time.sleep(CANCEL_POLL_S)
            with self._changed:
                # Each node's work is cancelled once: a second cancel could cut short its cleanup.
                doomed = [
                    entry for run_id in [r for r in self._work if _must_stop(r)] for entry in self._work.pop(run_id)
                ]
            for loop, doomed_task in doomed:
                with contextlib.suppress(RuntimeError):  # its loop closed: the node ended meanwhile
                    loop.call_soon_threadsafe(doomed_task.cancel)


_watch = _CancelWatch()


def _must_stop(run_id: str) -> bool:
    return cancellation.requested(run_id) or cancellation.lost(run_id)


def unless_lost(run_id: str) -> None:
    if cancellation.lost(run_id):
        raise RunLost(f"run {run_id} is carried on by another executor")


async def unless_cancelled(work: Awaitable[Any], run_id: str, node_id: str, agent: str) -> Any:
    """Await ``work`` unless the run's owner cancels it: then the work is cancelled (a sandbox or container it
    started is killed by its own cleanup) and the node fails as cancelled."""
    task = asyncio.ensure_future(work)
    with _watch.watching(run_id, task):
        try:
            return await task
        except asyncio.CancelledError:
            # Only the watch cancels the work without cancelling this node's own task (a timeout does that).
            if asyncio.current_task().cancelling() == 0:
                unless_lost(run_id)
                if cancellation.requested(run_id):
                    raise NodeFailed(f"node {node_id!r} ({agent}): the run was cancelled") from None
            raise

"""Keeps the processes `cxmpute up` started running: each child that exits is started again, after a delay
that doubles with every quick failure, and all of them stop together when `up` stops.

One thread per child, alive until :meth:`Supervisor.stop` has stopped every child: a child started with a
parent-death signal (the Prefect server) receives it when the *thread* that started it ends, so a watcher must
outlive its child. A restart that blocks (the Prefect server waits until its API answers) holds up only its own
child.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

MIN_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 60.0  # a child that stayed up this long failed afresh: its next restart waits MIN_BACKOFF_S
STOP_TIMEOUT_S = 30.0


def terminate(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> None:
    """Ask a child to stop (SIGTERM); kill it if it has not within ``timeout``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Supervised:
    """A child to keep running. ``start`` returns it started (it may block until the child is usable, and raise
    when it cannot start: that counts as an exit); ``stop`` stops it for good."""

    name: str
    start: Callable[[], subprocess.Popen]
    stop: Callable[[subprocess.Popen], None] = terminate
    proc: subprocess.Popen | None = None  # set to adopt a child already started


class Supervisor:
    def __init__(
        self,
        say: Callable[[str], None],
        *,
        min_backoff: float = MIN_BACKOFF_S,
        max_backoff: float = MAX_BACKOFF_S,
        stable_after: float = STABLE_AFTER_S,
        poll: float = 0.2,
    ):
        self._say = say
        self._min, self._max, self._stable, self._poll = min_backoff, max_backoff, stable_after, poll
        self._children: list[Supervised] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()  # guards each child's ``proc`` against a restart racing stop()
        self._stopping = threading.Event()
        self._stopped = threading.Event()

    def add(self, child: Supervised) -> None:
        """Supervise ``child``: adopt its process, or start it in its watcher thread."""
        with self._lock:
            if self._stopping.is_set():
                return
            self._children.append(child)
        thread = threading.Thread(target=self._watch, args=(child,), daemon=True, name=f"supervise-{child.name}")
        self._threads.append(thread)
        thread.start()

    def _watch(self, child: Supervised) -> None:
        delay = self._min
        failure = None if child.proc is not None else self._launch(child)
        since = time.monotonic()
        while not self._stopping.is_set():
            proc = child.proc
            if proc is not None and proc.poll() is None:
                self._stopping.wait(self._poll)
                continue
            if time.monotonic() - since >= self._stable:
                delay = self._min
            why = failure or f"(pid {proc.pid}) exited with {proc.returncode}"  # type: ignore[union-attr]
            self._say(f"the {child.name} {why}: restarting it in {delay:g} s")
            if self._stopping.wait(delay):
                break
            failure = self._launch(child)
            since = time.monotonic()
            delay = min(delay * 2, self._max)
        self._stopped.wait()  # see the module's docstring: this thread outlives the child

    def _launch(self, child: Supervised) -> str | None:
        """Start ``child``; return why it could not start, if it could not."""
        try:
            proc: subprocess.Popen | None = child.start()
        except Exception as exc:  # noqa: BLE001 - retried like an exit: a watcher that died would restart nothing
            proc, failure = None, f"could not start ({type(exc).__name__}: {exc})"
        else:
            failure = None
        with self._lock:
            late = self._stopping.is_set()
            child.proc = None if late else proc
        if late and proc is not None:  # stop() has already passed this child: it must not outlive `up`
            child.stop(proc)
        return failure

    def stop(self) -> None:
        """Stop every child, the last added first (each stopping cleanly, killed if it will not), and end the
        watchers."""
        with self._lock:
            self._stopping.set()
            children = list(reversed(self._children))
        try:
            for child in children:
                with self._lock:
                    proc = child.proc
                if proc is not None and proc.poll() is None:
                    self._say(f"stopping the {child.name}")
                    child.stop(proc)
        finally:
            self._stopped.set()
            for thread in self._threads:
                thread.join(5)

"""Group commit: concurrent callers share one write instead of paying one each.

Callers queue a ticket. A caller that finds no writer at work becomes the writer: it takes what is queued (up to
``max_batch``), writes it as one batch, and hands the writer's role to the next queued caller, so no batch ever
waits to fill: a lone caller writes at once, and callers that arrive during a write are written together by the
next one. The others sleep until their ticket is finished or the role comes to them. Placements
(:mod:`compute.market.placement`) and gateway settlements (:mod:`compute.inference.settlement`) are written this
way.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T", bound="Ticket")


@dataclass(eq=False, kw_only=True)
class Ticket:
    """One caller's request, waiting in the queue or in a batch; subclasses add what is asked."""

    lead: bool = False  # this caller is the writer now
    done: bool = False
    result: object = None
    error: BaseException | None = None
    wake: threading.Event = field(default_factory=threading.Event)

    def finish(self, result: object = None, error: BaseException | None = None) -> None:
        self.result, self.error, self.done = result, error, True
        self.wake.set()


class GroupCommit(ABC, Generic[T]):
    """A writer shared by the callers of one process."""

    max_batch = 256

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._queue: list[T] = []
        self._writing = False

    def submit(self, ticket: T) -> T:
        """Queue ``ticket`` and return it once finished (its ``error`` set for a failure: the caller raises it)."""
        with self._mutex:
            self._queue.append(ticket)
            if not self._writing:
                self._writing = ticket.lead = True
        while not ticket.done:
            if ticket.lead:
                self._write_next()
            else:
                ticket.wake.wait()  # set when this ticket is done, or when this caller becomes the writer
        if ticket.lead:
            self._hand_over()
        return ticket

    @property
    def waiting(self) -> int:
        """Callers queued for the next batch."""
        with self._mutex:
            return len(self._queue)

    @abstractmethod
    def write(self, batch: list[T]) -> None:
        """Write ``batch``, finishing its tickets; one left unfinished goes back to the head of the queue. An
        exception finishes every ticket left with it."""

    def idle(self) -> None:
        """Called by the last writer when no caller waits (e.g. to give back a connection it kept): keep it short,
        callers queue behind it."""

    def _write_next(self) -> None:
        with self._mutex:
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
        try:
            self.write(batch)
        except BaseException as exc:  # noqa: BLE001 - the batch's callers get the failure; the writer goes on
            for ticket in batch:
                if not ticket.done:
                    ticket.finish(error=exc)
        again = [ticket for ticket in batch if not ticket.done]
        if again:
            with self._mutex:
                self._queue[:0] = again

    def _hand_over(self) -> None:
        # The callers just answered may be about to ask again; letting the threads that are ready run first (no
        # wait: it returns at once when none is) puts their requests in the next batch together.
        time.sleep(0)
        with self._mutex:
            if self._queue:
                nxt = self._queue[0]
                nxt.lead = True
                nxt.wake.set()
            else:
                self._writing = False
                self.idle()  # under the mutex: no new writer takes the role before this returns

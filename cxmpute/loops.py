"""Background loops: the one way a platform process runs work on a timer.

A :class:`LoopService` runs :meth:`~LoopService.run_once` at start and then every
:meth:`~LoopService.interval` seconds until it is stopped. A pass that raises is logged under the
service's name and the next pass runs as usual, so one bad round (a database hiccup, a provider that
answers garbage) never ends the loop. The platform API's lifespan starts its list of services
(:func:`web.background.services`) with :func:`running`; nothing else starts a loop in that process.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import ClassVar


class LoopService(ABC):
    """One background loop. Subclasses name themselves, say how often they run and what one pass does."""

    name: ClassVar[str]
    every_s: ClassVar[float] = 5.0

    def __init__(self) -> None:
        self.log = logging.getLogger(f"cxmpute.loops.{self.name}")
        self._task: asyncio.Task[None] | None = None
        self.passes = 0  # completed passes, failed ones included: how a reader sees that the loop turns

    def interval(self) -> float:
        """Seconds between the end of one pass and the start of the next; read before every sleep, so a
        service may derive it from settings that change."""
        return self.every_s

    @abstractmethod
    async def run_once(self) -> None:
        """One pass. Blocking work belongs in a thread (``asyncio.to_thread``): the loop shares the API's
        event loop."""

    async def on_stop(self) -> None:  # noqa: B027 - an optional hook, not an abstract one
        """Release what the passes hold (tasks they started, clients): called once, after the last pass."""

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"loop service {self.name!r} is already running")
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"loop-{self.name}")

    async def stop(self) -> None:
        """Cancel the loop (a pass in progress is interrupted), wait for it to end, then :meth:`on_stop`."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.on_stop()

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # one failed pass must not stop the next
                self.log.exception("%s: a pass failed; the next runs in %.1f s", self.name, self.interval())
            self.passes += 1
            await asyncio.sleep(self.interval())


@asynccontextmanager
async def running(services: Sequence[LoopService]) -> AsyncIterator[Sequence[LoopService]]:
    """Run ``services`` for the body of the ``async with``; on the way out stop them, last started first, each
    stop attempted even when an earlier one fails."""
    started: list[LoopService] = []
    try:
        for service in services:
            service.start()
            started.append(service)
        yield services
    finally:
        errors = []
        for service in reversed(started):
            try:
                await service.stop()
            except Exception as exc:  # keep stopping the others; report after
                errors.append(exc)
        if errors:
            raise errors[0]

"""The background-loop base: a failed pass is logged and the loop goes on; stopping ends it cleanly."""

from __future__ import annotations

import asyncio
import logging

import pytest

from cxmpute.loops import LoopService, running


class Counting(LoopService):
    name = "counting"
    every_s = 0.01

    def __init__(self, fail_on: set[int] | None = None, log: list[str] | None = None) -> None:
        super().__init__()
        self.fail_on = fail_on or set()
        self.calls = 0
        self.stopped = 0
        self.events = log if log is not None else []

    async def run_once(self) -> None:
        self.calls += 1
        if self.calls in self.fail_on:
            raise RuntimeError(f"pass {self.calls} broke")

    async def on_stop(self) -> None:
        self.stopped += 1
        self.events.append(f"stop {self.name}")


async def _until(check, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


async def test_a_failed_pass_is_logged_under_the_service_name_and_the_next_runs(caplog):
    service = Counting(fail_on={1, 2})
    with caplog.at_level(logging.ERROR, logger="cxmpute.loops"):
        async with running([service]):
            await _until(lambda: service.calls >= 4)
    assert service.passes >= 3 and not service.running
    failures = [r for r in caplog.records if r.name == "cxmpute.loops.counting"]
    assert len(failures) == 2
    assert "counting" in failures[0].getMessage() and "pass 1 broke" in failures[0].exc_text


async def test_stop_interrupts_a_pass_and_releases_once():
    class Slow(Counting):
        name = "slow"

        async def run_once(self) -> None:
            self.calls += 1
            await asyncio.sleep(60)

    service = Slow()
    service.start()
    with pytest.raises(RuntimeError, match="already running"):
        service.start()
    await _until(lambda: service.calls == 1)
    async with asyncio.timeout(2):
        await service.stop()
    assert not service.running and service.stopped == 1 and service.passes == 0


async def test_the_interval_is_read_before_every_sleep():
    class Stretching(Counting):
        name = "stretching"

        def interval(self) -> float:
            return 0.01 if self.calls < 3 else 60.0

    service = Stretching()
    async with running([service]):
        await _until(lambda: service.calls == 3)
        await asyncio.sleep(0.2)
        assert service.calls == 3  # the fourth pass waits the longer interval


async def test_services_stop_last_first_and_every_stop_is_tried():
    events: list[str] = []

    class Broken(Counting):
        name = "broken"

        async def on_stop(self) -> None:
            await super().on_stop()
            raise OSError("could not close its client")

    first, second, third = Counting(log=events), Broken(log=events), Counting(log=events)
    third.name = "third"  # type: ignore[misc]  # an instance label, for the order
    with pytest.raises(OSError, match="could not close"):
        async with running([first, second, third]):
            await _until(lambda: first.calls and second.calls and third.calls)
    assert events == ["stop third", "stop broken", "stop counting"]
    assert not any(s.running for s in (first, second, third))

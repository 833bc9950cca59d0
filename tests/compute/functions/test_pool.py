"""The warm pool: cold then warm reuse, timeouts, memory limits, queueing under the concurrency limit,
scale to zero."""

from __future__ import annotations

import asyncio
import time

import pytest

from compute.functions.pool import FunctionPool, FunctionSpec


def spec(**overrides) -> FunctionSpec:
    values = {
        "owner": "alice",
        "name": "echo",
        "version": 1,
        "cid": "bafy-test",
        "memory_mb": 128,
        "timeout_s": 10.0,
        "concurrency": 4,
    }
    return FunctionSpec(**{**values, **overrides})


@pytest.fixture
async def pool(sandbox_runtime):
    pool = FunctionPool(sandbox_runtime, idle_s=300)
    yield pool
    await pool.close()


class Loads:
    """Counts how often the pool asked for the package: once per cold start."""

    def __init__(self, data: bytes):
        self.data, self.count = data, 0

    def __call__(self) -> bytes:
        self.count += 1
        return self.data


async def test_first_invocation_is_cold_and_the_next_reuses_the_interpreter(pool, package_bytes):
    loads = Loads(package_bytes)
    first = await pool.invoke(spec(), {"echo": 1}, loads)
    second = await pool.invoke(spec(), {"echo": 2}, loads)
    assert first.kind == second.kind == "ok", (first, second)
    assert first.cold and not second.cold
    assert (first.result["calls"], second.result["calls"]) == (1, 2)  # module state survived: same interpreter
    assert first.pid == second.pid and loads.count == 1
    assert second.result["echo"] == 2 and second.result["function"] == "echo"
    assert second.stdout == "event {'echo': 2}\n"  # only this invocation's output, not the import's
    assert 0 < second.result["remaining_ms"] <= 10_000
    assert second.duration_ms > 0 and second.max_rss_mb > 0
    assert pool.warm(spec()) == 1


async def test_a_new_version_starts_its_own_interpreter(pool, package_bytes):
    loads = Loads(package_bytes)
    await pool.invoke(spec(version=1), None, loads)
    other = await pool.invoke(spec(version=2, cid="bafy-other"), None, loads)
    assert other.cold and other.result["calls"] == 1 and loads.count == 2


async def test_an_invocation_past_its_timeout_is_stopped_and_the_next_starts_cold(pool, package_bytes):
    loads = Loads(package_bytes)
    await pool.invoke(spec(timeout_s=1.0), None, loads)
    slow = await pool.invoke(spec(timeout_s=1.0), {"sleep": 30}, loads)
    assert slow.kind == "timeout"
    assert "timeout of 1 s" in slow.error and "stopped" in slow.error
    assert slow.stdout == "event {'sleep': 30}\n"  # what it printed before it was stopped is kept
    after = await pool.invoke(spec(timeout_s=1.0), None, loads)
    assert after.kind == "ok" and after.cold and after.result["calls"] == 1


async def test_allocating_past_the_memory_limit_is_a_clear_error(pool, package_bytes):
    loads = Loads(package_bytes)
    big = await pool.invoke(spec(memory_mb=128), {"allocate_mb": 512}, loads)
    assert big.kind == "memory"
    assert "memory limit of 128 MB" in big.error and "MemoryError" in big.error
    fine = await pool.invoke(spec(memory_mb=128), {"allocate_mb": 16}, loads)
    assert fine.kind == "ok" and fine.cold  # the interpreter that ran out of memory was not reused


async def test_peak_memory_is_measured_per_invocation(pool, package_bytes):
    loads = Loads(package_bytes)
    small = await pool.invoke(spec(memory_mb=256), None, loads)
    big = await pool.invoke(spec(memory_mb=256), {"allocate_mb": 96}, loads)
    after = await pool.invoke(spec(memory_mb=256), None, loads)
    assert small.kind == big.kind == after.kind == "ok" and not after.cold
    assert big.max_rss_mb > small.max_rss_mb + 64  # the 96 MB block shows in its own invocation...
    assert after.max_rss_mb < big.max_rss_mb - 64  # ...and not in the next one's


async def test_a_handler_error_reports_its_traceback_and_keeps_the_interpreter(pool, package_bytes):
    loads = Loads(package_bytes)
    failed = await pool.invoke(spec(), {"fail": "bad input"}, loads)
    assert failed.kind == "error"
    assert "ValueError: bad input" in failed.error and "handler.py" in failed.error
    again = await pool.invoke(spec(), None, loads)
    assert again.kind == "ok" and not again.cold and again.result["calls"] == 2


async def test_a_result_too_large_to_return_is_a_clear_error(pool, tmp_path):
    from compute.functions import package
    from compute.functions.pool import RESULT_CAP

    from .conftest import write_function

    source = "def handler(event, context):\n    return 'x' * event\n"
    data = package.build(write_function(tmp_path / "big", source))
    big = await pool.invoke(spec(memory_mb=512), RESULT_CAP + 1, lambda: data)
    assert big.kind == "error" and "larger than 8 MB" in big.error
    small = await pool.invoke(spec(memory_mb=512), 3, lambda: data)
    assert small.kind == "ok" and small.result == "xxx" and not small.cold


async def test_invocations_over_the_concurrency_limit_queue_instead_of_failing(pool, package_bytes):
    loads = Loads(package_bytes)
    first, second = await asyncio.gather(
        pool.invoke(spec(concurrency=1), {"sleep": 0.5}, loads), pool.invoke(spec(concurrency=1), {"sleep": 0.5}, loads)
    )
    assert first.kind == second.kind == "ok"
    runs = sorted([first.result, second.result], key=lambda r: r["started"])
    assert runs[1]["started"] >= runs[0]["ended"]  # the second ran after the first had finished
    assert loads.count == 1 and {first.cold, second.cold} == {True, False}  # and reused its interpreter
    assert max(first.queued_ms, second.queued_ms) > 0


async def test_under_the_limit_invocations_run_side_by_side(pool, package_bytes):
    loads = Loads(package_bytes)
    results = await asyncio.gather(*[pool.invoke(spec(concurrency=2), {"sleep": 0.5}, loads) for _ in range(2)])
    runs = sorted([r.result for r in results], key=lambda r: r["started"])
    assert runs[1]["started"] < runs[0]["ended"]  # overlapping: two interpreters
    assert loads.count == 2 and pool.warm(spec(concurrency=2)) == 2


async def test_idle_interpreters_are_closed_and_the_function_scales_to_zero(pool, package_bytes):
    loads = Loads(package_bytes)
    await pool.invoke(spec(), None, loads)
    assert pool.warm(spec()) == 1
    assert await pool.reap(now=time.monotonic() + 10) == 0  # idle, but not for long
    assert await pool.reap(now=time.monotonic() + pool.idle_s + 1) == 1
    assert pool.warm(spec()) == 0
    again = await pool.invoke(spec(), None, loads)
    assert again.cold and again.result["calls"] == 1


async def test_the_pool_closes_idle_interpreters_by_itself(sandbox_runtime, package_bytes):
    pool = FunctionPool(sandbox_runtime, idle_s=0.2)
    try:
        await pool.invoke(spec(), None, Loads(package_bytes))
        for _ in range(600):  # the reaper runs in the background; no call reaps here
            if pool.warm(spec()) == 0:
                break
            await asyncio.sleep(0.05)
        assert pool.warm(spec()) == 0
    finally:
        await pool.close()


async def test_a_package_that_fails_to_import_is_reported(pool, tmp_path):
    from compute.functions import package

    from .conftest import write_function

    data = package.build(write_function(tmp_path / "broken", "import not_a_module\n\ndef handler(e, c):\n    pass\n"))
    outcome = await pool.invoke(spec(), None, lambda: data)
    assert outcome.kind == "error" and "could not be loaded" in outcome.error
    assert "ModuleNotFoundError" in outcome.error and "not_a_module" in outcome.error
    assert pool.warm(spec()) == 0


async def test_the_handler_cannot_reach_the_network_or_the_host(pool, tmp_path):
    from compute.functions import package

    from .conftest import write_function

    source = (
        "import os, socket\n\ndef handler(event, context):\n"
        "    try:\n        socket.create_connection(('1.1.1.1', 80), timeout=2)\n        net = True\n"
        "    except OSError:\n        net = False\n"
        "    return {'net': net, 'uid': os.getuid(), 'home': os.path.exists('/etc/shadow'), 'cwd': os.getcwd()}\n"
    )
    data = package.build(write_function(tmp_path / "probe", source))
    outcome = await pool.invoke(spec(), None, lambda: data)
    assert outcome.kind == "ok", outcome
    assert outcome.result["net"] is False and outcome.result["uid"] != 0 and outcome.result["home"] is False

"""Sandboxed code execution: cold start, warm session cells, container start; each against a baseline.

Runs scale with CXMPUTE_BENCH_SANDBOX_RUNS (default 20 cold starts, 10x that many cells, a quarter of
it for containers).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time

from bench.results import table, write_section
from compute.runtimes import SandboxSpec, runtime_registry
from compute.runtimes.code import SessionManager
from cxmpute.settings import get_settings

RUNS = int(os.environ.get("CXMPUTE_BENCH_SANDBOX_RUNS", "20"))


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return round(statistics.median(ordered) * 1000, 2), round(ordered[int(len(ordered) * 0.9) - 1] * 1000, 2)


def _time(fn, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


async def _sandbox_print(runtime) -> None:
    sandbox = await runtime.start(SandboxSpec())
    try:
        result = await sandbox.exec([*runtime.python_argv(), "-c", "print(1)"])
        assert result.stdout == b"1\n", result
    finally:
        await sandbox.stop()


def cold_start(runtime) -> list[list]:
    plain = _time(lambda: subprocess.run([sys.executable, "-c", "print(1)"], check=True, capture_output=True), RUNS)
    sandboxed = _time(lambda: asyncio.run(_sandbox_print(runtime)), RUNS)
    (pm, p9), (sm, s9) = _ms(plain), _ms(sandboxed)
    return [
        ["`python3 -c 'print(1)'` (baseline)", RUNS, pm, p9, "1.00"],
        ["sandbox: start, `print(1)`, stop", RUNS, sm, s9, f"{sm / pm:.2f}"],
    ]


CELL = "x += 1\nx"


def _plain_kernel_cells(runs: int) -> list[float]:
    """The same cell sent over a pipe to an unsandboxed Python child: what the sandbox adds on top."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-c",
            "import sys\nns = {'x': 0}\nfor line in sys.stdin:\n"
            "    exec(compile(line.encode().decode('unicode_escape'), '<cell>', 'exec'), ns)\n"
            "    print(repr(ns['x']), flush=True)",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    encoded = CELL.encode("unicode_escape").decode() + "\n"
    samples = []
    for _ in range(runs + 5):
        start = time.perf_counter()
        child.stdin.write(encoded)
        child.stdin.flush()
        child.stdout.readline()
        samples.append(time.perf_counter() - start)
    child.stdin.close()
    child.wait()
    return samples[5:]


async def _session_cells(runtime, runs: int) -> list[float]:
    manager = SessionManager()
    session = await manager.open("bench", runtime, SandboxSpec(), idle_timeout=600)
    try:
        await session.run("x = 0", 10)
        samples = []
        for _ in range(runs + 5):
            start = time.perf_counter()
            result = await session.run(CELL, 10)
            samples.append(time.perf_counter() - start)
            assert result.status == "ok", result
        return samples[5:]
    finally:
        manager.close_all()


def warm_cells(registry) -> list[list]:
    runs = RUNS * 10
    (pm, p9) = _ms(_plain_kernel_cells(runs))
    rows = [["unsandboxed Python child over a pipe (baseline)", runs, pm, p9, "1.00"]]
    for name in registry.offered():
        sm, s9 = _ms(asyncio.run(_session_cells(registry.get(name), runs)))
        rows.append([f"Sequential Code cell, {name} runtime", runs, sm, s9, f"{sm / pm:.2f}"])
    return rows


def container_start(registry) -> list[list] | str:
    why = registry.runtime("container").check()
    if why:
        return f"Not measured: {why}."
    runtime = registry.get("container")
    runs = max(RUNS // 4, 3)
    cli = [
        "docker",
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "65534:65534",
        runtime.image,
        "/usr/bin/python3",
        "-c",
        "print(1)",
    ]
    subprocess.run(cli, check=True, capture_output=True)  # warm the engine's caches alike for both
    docker_cli = _time(lambda: subprocess.run(cli, check=True, capture_output=True), runs)
    ours = _time(lambda: asyncio.run(_sandbox_print(runtime)), runs)
    (cm, c9), (om, o9) = _ms(docker_cli), _ms(ours)
    return [
        ["`docker run --rm ... python3 -c 'print(1)'` (baseline)", runs, cm, c9, "1.00"],
        ["container runtime: start, `print(1)`, stop", runs, om, o9, f"{om / cm:.2f}"],
    ]


def main() -> None:
    registry = runtime_registry(get_settings())
    headers = ["what", "runs", "median ms", "p90 ms", "x baseline"]
    sections = [
        "### Cold start of `print(1)`",
        table(headers, cold_start(registry.get("sandbox"))),
        "### Warm Sequential Code cell (`x += 1; x`)",
        table(headers, warm_cells(registry)),
        "### Container start",
    ]
    containers = container_start(registry)
    sections.append(containers if isinstance(containers, str) else table(headers, containers))
    driver = subprocess.run(["docker", "info", "--format", "{{.Driver}}"], capture_output=True, text=True).stdout
    sections.append(
        f"Runs scale with `CXMPUTE_BENCH_SANDBOX_RUNS` (this run: {RUNS}). The sandbox runs as root "
        "with bubblewrap, a per-job uid, rlimits and a seccomp filter; the container engine uses the "
        f"{driver.strip() or 'unknown'} storage driver."
    )
    write_section("Sandboxed code execution", "\n\n".join(sections))


if __name__ == "__main__":
    main()

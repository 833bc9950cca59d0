"""Helpers the runtime tests share: run one snippet in a fresh sandbox, look for leftovers on the host."""

from __future__ import annotations

import os
from pathlib import Path

from compute.runtimes import JobSpec, Limits
from compute.runtimes.code import CodeResult, run_code


def scratch_leftovers(runtime) -> list[str]:
    return sorted(os.listdir(runtime.root)) if runtime.root.exists() else []


async def run_job(runtime, code: str, *, language: str = "python", network: bool = False, **limits) -> CodeResult:
    """Run one snippet in a fresh sandbox of ``runtime`` and stop it, as Codexecution does."""
    spec = JobSpec(network=network, limits=Limits(**{"wall_seconds": 10, "cpu_seconds": 10, "memory_mb": 256,
                                                     "processes": 32, "disk_mb": 16, **limits}))
    sandbox = await runtime.start(spec)
    try:
        return await run_code(sandbox, runtime, code, language=language)
    finally:
        await sandbox.stop()


def host_processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if marker.encode() in Path(entry.path, "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found

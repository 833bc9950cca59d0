"""What this machine offers: CPU, memory, disk, GPUs (through nvidia-smi where present) and a short benchmark."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from pydantic import BaseModel, Field


class Gpu(BaseModel):
    model: str
    memory_mb: int


class HardwareProfile(BaseModel):
    cpu_count: int
    cpu_model: str
    memory_mb: int
    disk_gb: int
    gpus: list[Gpu] = []
    benchmark_score: float = 0.0
    runtimes: list[str] = Field(default_factory=list, description="Runtimes this machine can run (their check passes)")

    def digest(self) -> bytes:
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).digest()


def detect(data_dir: Path | None = None, benchmark_s: float = 0.2) -> HardwareProfile:
    return HardwareProfile(
        cpu_count=os.cpu_count() or 1,
        cpu_model=_cpu_model(),
        memory_mb=_memory_mb(),
        disk_gb=shutil.disk_usage(data_dir or Path.home()).free // 2**30,
        gpus=_gpus(),
        benchmark_score=benchmark(benchmark_s),
    )


def benchmark(seconds: float = 0.2) -> float:
    """SHA-256 MiB/s on one core: a quick, comparable single-thread score."""
    block = b"\0" * 2**20
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        hashlib.sha256(block).digest()
        done += 1
    return round(done / (time.perf_counter() - start), 1)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _memory_mb() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError, AttributeError):
        return 0


def _gpus() -> list[Gpu]:
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, _, memory = line.rpartition(",")
        if name:
            gpus.append(Gpu(model=name.strip(), memory_mb=int(float(memory.strip() or 0))))
    return gpus

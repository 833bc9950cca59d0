"""Platform processes a test starts itself (`cxmpute serve`, `cxmpute executor start`): each in its own session,
so stopping one stops what it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx


def cxmpute(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cxmpute.cli", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def serve(port: int, env: dict[str, str], log: Path, wait: float = 120) -> subprocess.Popen:
    """`cxmpute serve` on ``port``, once it answers /healthz."""
    proc = cxmpute(["serve", "--port", str(port)], env, log)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"the API on port {port} did not answer within {wait}s")


def stop(procs: list[subprocess.Popen], grace: float = 20) -> None:
    """SIGTERM each, then SIGKILL what is still there after ``grace`` seconds."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

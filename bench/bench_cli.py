"""CLI wall time: `cxmpute --help` and commands that only talk to the API, against `python -c pass`.

The platform API runs as a `cxmpute serve` subprocess on a free port with its own data dir; each command is
a fresh process, as a user's shell starts it, interleaved with the baseline so both see the same machine.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.results import table, write_section
from cxmpute.ports import free_port

RUNS = int(os.environ.get("CXMPUTE_BENCH_CLI_RUNS", "10"))
CLI = [sys.executable, "-m", "cxmpute.cli"]
COMMANDS = {
    "`python -c pass` (baseline)": [sys.executable, "-c", "pass"],
    "`cxmpute --help`": [*CLI, "--help"],
    "`cxmpute agents list`": [*CLI, "agents", "list"],
    "`cxmpute account balance`": [*CLI, "account", "balance"],
    "`cxmpute runs ls`": [*CLI, "runs", "ls"],
}


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[2:])} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return elapsed


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cxmpute-bench-cli-") as tmp:
        port = free_port()
        env = {
            **os.environ,
            "CXMPUTE_HOME": str(Path(tmp) / "home"),
            "CXMPUTE_API_PORT": str(port),
            "CXMPUTE_API_URL": f"http://127.0.0.1:{port}",
            "PREFECT_HOME": str(Path(tmp) / "prefect"),
        }
        server = subprocess.Popen(
            [*CLI, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{env['CXMPUTE_API_URL']}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the API did not start")
                time.sleep(0.2)
            for cmd in COMMANDS.values():  # warm the page cache and sign in once, as a returning user has
                _wall(cmd, env)
            times: dict[str, list[float]] = {name: [] for name in COMMANDS}
            for _ in range(RUNS):
                for name, cmd in COMMANDS.items():
                    times[name].append(_wall(cmd, env))
        finally:
            server.terminate()
            server.wait(30)
    base = statistics.median(times["`python -c pass` (baseline)"])
    rows = []
    for name, runs in times.items():
        runs.sort()
        median = statistics.median(runs)
        rows.append(
            [
                name,
                len(runs),
                round(median * 1000),
                round(runs[int(0.9 * (len(runs) - 1))] * 1000),
                f"{median / base:.1f}",
                f"{(median - base) * 1000:.0f}",
            ]
        )
    write_section(
        "CLI wall time",
        table(["command", "runs", "median ms", "p90 ms", "x baseline", "ms over baseline"], rows)
        + f"\n\nEach command is a fresh process (a returning user: signed in once, session kept), "
        f"interleaved with the baseline, against `cxmpute serve` on this machine; runs scale with "
        f"`CXMPUTE_BENCH_CLI_RUNS` (this run: {RUNS}).",
    )


if __name__ == "__main__":
    main()

"""`cxmpute up` keeps what it started running: a child that exits is started again after a delay that doubles
while it keeps failing, stopping stops every child for good, and a Prefect server killed mid-run comes back on
its port and data while the API answers 503 naming it, readiness says so, and the run completes; a killed
executor is started again."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import httpx
import psutil
import pytest

from tests.support.up import start_up, wait_until_ready
from web.supervisor import Supervised, Supervisor, terminate


def _python(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


class Said(list):
    """The supervisor's console lines, in order."""

    def __call__(self, line: str) -> None:
        self.append(line)

    def wait_for(self, predicate, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            assert time.monotonic() < deadline, list(self)
            time.sleep(0.02)


def test_a_child_that_exits_is_restarted_after_a_delay_that_doubles_up_to_the_cap():
    said = Said()
    supervisor = Supervisor(said, min_backoff=0.05, max_backoff=0.2, stable_after=60, poll=0.01)
    starts: list[float] = []

    def start() -> subprocess.Popen:
        starts.append(time.monotonic())
        return _python("import sys; sys.exit(3)")

    supervisor.add(Supervised("flaky", start=start))
    try:
        said.wait_for(lambda s: len(s) >= 5)
    finally:
        supervisor.stop()
    assert all("the flaky (pid " in line and "exited with 3" in line for line in said[:5]), said
    delays = [line.rsplit("restarting it in ", 1)[1] for line in said[:5]]
    assert delays == ["0.05 s", "0.1 s", "0.2 s", "0.2 s", "0.2 s"], said
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(gap >= 0.05 for gap in gaps[:4]) and gaps[2] >= 0.2, gaps


def test_a_child_that_stayed_up_a_while_is_restarted_after_the_shortest_delay_again():
    said = Said()
    supervisor = Supervisor(said, min_backoff=0.05, max_backoff=5, stable_after=0.3, poll=0.01)
    supervisor.add(Supervised("steady", start=lambda: _python("import time; time.sleep(0.5)")))
    try:
        said.wait_for(lambda s: len(s) >= 3, timeout=30)
    finally:
        supervisor.stop()
    assert all(line.endswith("restarting it in 0.05 s") for line in said[:3]), said


def test_a_child_that_cannot_start_is_retried_with_the_reason_on_one_line():
    said = Said()
    attempts = []

    def start() -> subprocess.Popen:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("Prefect server exited with 1; see server.log")
        return _python("import time; time.sleep(60)")

    supervisor = Supervisor(said, min_backoff=0.05, max_backoff=1, poll=0.01)
    child = Supervised("Prefect server", start=start)
    supervisor.add(child)
    try:
        said.wait_for(lambda s: len(s) >= 2 and child.proc is not None)
        assert child.proc.poll() is None
    finally:
        supervisor.stop()
    assert said[0] == (
        "the Prefect server could not start (RuntimeError: Prefect server exited with 1; see "
        "server.log): restarting it in 0.05 s"
    ), said
    assert said[1].endswith("restarting it in 0.1 s") and len(attempts) == 3, said


def test_stop_stops_every_child_for_good_killing_one_that_ignores_sigterm():
    said = Said()
    supervisor = Supervisor(said, min_backoff=0.01, poll=0.01)
    adopted = _python("import time; time.sleep(60)")
    stubborn_code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    )
    started: list[subprocess.Popen] = []

    def stubborn() -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", stubborn_code], stdout=subprocess.PIPE)
        proc.stdout.readline()  # its handler is in place
        started.append(proc)
        return proc

    supervisor.add(Supervised("server", start=lambda: _python(""), proc=adopted))
    supervisor.add(Supervised("stubborn", start=stubborn, stop=lambda p: terminate(p, timeout=0.5)))
    deadline = time.monotonic() + 20
    while not started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    supervisor.stop()
    assert adopted.poll() == -signal.SIGTERM
    assert started[0].poll() == -signal.SIGKILL
    assert said == ["stopping the stubborn", "stopping the server"]  # the last started stops first
    time.sleep(0.2)
    assert len(started) == 1 and not [t for t in threading.enumerate() if t.name.startswith("supervise-")]
    supervisor.add(Supervised("late", start=lambda: pytest.fail("started after stop")))  # ignored once stopped


# ---- the platform: Prefect killed mid-run ------------------------------------------------------------------

WAIT_S = 10
WAITING = {
    "name": "wait",
    "inputs": {"value": {"default": "kept"}},
    "outputs": {"value": {"node": "wait", "field": "value"}},
    "nodes": [
        {"id": "in", "agent": "io.input", "params": {"name": "value"}},
        {"id": "wait", "agent": "util.wait", "params": {"seconds": WAIT_S}},
    ],
    "edges": [{"source": "in", "source_field": "value", "target": "wait", "target_field": "value"}],
}


def _until(predicate, what: str, platform, timeout: float, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"no {what} within {timeout} s\n{platform.logs()}"
        time.sleep(every)


def _child(up_pid: int, *words: str) -> psutil.Process | None:
    """The child of `cxmpute up` whose command line holds ``words``."""
    for proc in psutil.Process(up_pid).children():
        try:
            cmdline = proc.cmdline()
        except psutil.NoSuchProcess:
            continue
        if all(word in cmdline for word in words):
            return proc
    return None


def _prefect_server(up_pid: int) -> psutil.Process | None:
    return _child(up_pid, "prefect", "server", "start")


def _readiness(url: str) -> tuple[int, dict]:
    resp = httpx.get(f"{url}/readyz", timeout=10)
    return resp.status_code, resp.json()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_prefect_server_killed_mid_run_is_restarted_and_the_run_completes(tmp_path):
    platform = wait_until_ready(start_up(tmp_path / "home", provider=False), provider=False)
    try:
        url = platform.url
        _until(lambda: _readiness(url)[0] == 200, "readiness", platform, 120)
        run = httpx.post(f"{url}/v1/runs", json={"document": WAITING}, timeout=30)
        assert run.status_code == 202, run.text
        run_id = run.json()["id"]

        def waiting() -> bool:
            view = httpx.get(f"{url}/v1/runs/{run_id}", timeout=10).json()
            assert view["state"] not in {"completed", "failed", "crashed", "cancelled"}, view
            return view.get("nodes", {}).get("wait", {}).get("state") == "running"

        _until(waiting, "running wait node", platform, 120, every=0.2)
        server = _prefect_server(platform.proc.pid)
        assert server is not None, platform.logs()
        killed_at = time.monotonic()
        server.send_signal(signal.SIGKILL)

        def prefect_not_ready() -> tuple[int, dict] | None:
            status, body = _readiness(url)
            return None if body["checks"]["prefect"]["ok"] else (status, body)

        status, body = _until(prefect_not_ready, "readiness naming Prefect", platform, 5, every=0.05)
        assert status == 503 and body["status"] == "not-ready", body
        assert body["checks"]["database"]["ok"] and body["checks"]["storage"]["ok"], body
        assert time.monotonic() - killed_at < 5

        read = httpx.get(f"{url}/v1/runs/{run_id}", timeout=30)
        assert read.status_code == 503, read.text  # the Prefect server is not back yet: a start takes seconds
        assert read.json()["field"] == "PREFECT_API_URL" and "Prefect server" in read.json()["detail"], read.text
        assert read.headers["Retry-After"]

        _until(
            lambda: (
                f"the Prefect server (pid {server.pid}) exited with -9: restarting it in 0.5 s" in platform.output()
            ),
            "the restart line",
            platform,
            10,
        )
        _until(lambda: _readiness(url)[0] == 200, "readiness again", platform, 120, every=0.5)
        restarted = _prefect_server(platform.proc.pid)
        assert restarted is not None and restarted.pid != server.pid
        assert httpx.get(f"{platform.prefect_url}/health", timeout=5).status_code == 200  # the same port

        def finished() -> dict | None:
            view = httpx.get(f"{url}/v1/runs/{run_id}", timeout=30).json()
            return view if view.get("state") in {"completed", "failed", "crashed", "cancelled"} else None

        view = _until(finished, "finished run", platform, 240, every=1)
        assert view["state"] == "completed" and view["outputs"] == {"value": "kept"}, view

        # the executor too: killed, it is started again
        executor = _child(platform.proc.pid, "executor", "start")
        assert executor is not None, platform.logs()
        executor.send_signal(signal.SIGKILL)
        _until(
            lambda: f"the executor (pid {executor.pid}) exited with -9: restarting it in 0.5 s" in platform.output(),
            "the executor's restart line",
            platform,
            10,
        )
        _until(
            lambda: (e := _child(platform.proc.pid, "executor", "start")) is not None and e.pid != executor.pid,
            "a new executor",
            platform,
            10,
        )

        warned = [line for line in platform.output().splitlines() if "503 GET /v1/runs/{run_id}" in line]
        assert warned and all("PREFECT_API_URL" in line for line in warned), platform.output()
        assert "Traceback" not in platform.output(), platform.output()
    finally:
        returncode = platform.stop()
    assert returncode == 0, platform.output()
    assert "stopping the executor" in platform.output() and "stopping the Prefect server" in platform.output()

"""Workflow runs end to end, as users submit them: the platform API (uvicorn serving web.app) and run executors
(`cxmpute executor start`) as processes of their own, on one Prefect server started by this run.

* one trivial 3-node run at a time on an otherwise idle platform: submit (POST /v1/runs) to completed (polling
  GET /v1/runs/{id}), p50/p99;
* a 1,000-node workflow (branches × chained template nodes) end to end: wall time and nodes/s;
* many concurrent 3-node runs submitted at once over HTTP: runs/s, failures (a 5xx, an error or a run not
  finished in time; a 429 is retried after its Retry-After) and /healthz latency sampled during the load,
  against hand-written Prefect flows of the same three tasks, as many, run concurrently from threads here;
* where a run's time goes: requests to Prefect and CPU per run, in an executor and in the API.

Sizes come from the environment so a loaded machine can run it small: CXMPUTE_BENCH_RUNS_CONCURRENT (1000),
CXMPUTE_BENCH_RUNS_LATENCY (20), CXMPUTE_BENCH_RUNS_BRANCHES (100), CXMPUTE_BENCH_RUNS_DEPTH (10),
CXMPUTE_BENCH_RUNS_EXECUTORS (1), CXMPUTE_BENCH_RUNS_SUBMITTERS (64 client threads).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.results import table, write_section

CONCURRENT = int(os.environ.get("CXMPUTE_BENCH_RUNS_CONCURRENT", "1000"))
LATENCY_RUNS = int(os.environ.get("CXMPUTE_BENCH_RUNS_LATENCY", "20"))
BRANCHES = int(os.environ.get("CXMPUTE_BENCH_RUNS_BRANCHES", "100"))
DEPTH = int(os.environ.get("CXMPUTE_BENCH_RUNS_DEPTH", "10"))
EXECUTORS = int(os.environ.get("CXMPUTE_BENCH_RUNS_EXECUTORS", "1"))
SUBMITTERS = int(os.environ.get("CXMPUTE_BENCH_RUNS_SUBMITTERS", "64"))
RUN_TIMEOUT_S = float(os.environ.get("CXMPUTE_BENCH_RUNS_TIMEOUT_S", "1800"))
FINISHED = {"completed", "failed", "cancelled", "unknown"}


def trivial_document() -> dict[str, Any]:
    """input → template → output: the smallest run that moves a value through an agent."""
    return {
        "name": "trivial",
        "inputs": {"x": {"default": "hello"}},
        "outputs": {"out": {"node": "out", "field": "value"}},
        "nodes": [
            {"id": "in", "agent": "io.input", "params": {"name": "x"}},
            {"id": "t", "agent": "io.template", "params": {"template": "<{{ x }}>"}},
            {"id": "out", "agent": "io.output", "params": {"name": "out"}},
        ],
        "edges": [
            {"source": "in", "source_field": "value", "target": "t", "target_field": "variables.x"},
            {"source": "t", "source_field": "text", "target": "out", "target_field": "value"},
        ],
    }


def branches_document(branches: int, depth: int) -> dict[str, Any]:
    """``branches`` independent chains of ``depth`` template nodes, each node appending to its parent's text."""
    nodes, edges = [], []
    for b in range(branches):
        for d in range(depth):
            node = {"id": f"b{b}n{d}", "agent": "io.template", "params": {"template": "{{ x }}."}}
            if d == 0:
                node["params"]["variables"] = {"x": f"b{b}"}
            else:
                edges.append(
                    {
                        "source": f"b{b}n{d - 1}",
                        "source_field": "text",
                        "target": f"b{b}n{d}",
                        "target_field": "variables.x",
                    }
                )
            nodes.append(node)
    return {
        "name": "branches",
        "nodes": nodes,
        "edges": edges,
        "outputs": {"last": {"node": f"b{branches - 1}n{depth - 1}", "field": "text"}},
    }


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Platform:
    """API and executors as child processes, pointed at one Prefect server and one platform database."""

    def __init__(self, home: Path) -> None:
        from cxmpute.ports import free_port
        from flows.server import start_server, use_api

        self.home = home
        port = free_port()
        self.prefect = start_server(home / "prefect-server", port)
        self.prefect_url = f"http://127.0.0.1:{port}/api"
        use_api(self.prefect_url)
        api_port = free_port()
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.api = self._child(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "web.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(api_port),
                "--log-level",
                "warning",
            ],
            "api.log",
        )
        self.executors = [
            self._child([sys.executable, "-m", "cxmpute.cli", "executor", "start"], f"executor{i}.log")
            for i in range(EXECUTORS)
        ]
        self._wait_api()

    def _child(self, argv: list[str], log: str) -> subprocess.Popen:
        with open(self.home / log, "ab") as out:
            return subprocess.Popen(
                argv,
                env=dict(os.environ),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parent.parent,
            )

    def _wait_api(self) -> None:
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.api_url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the API did not answer; see {self.home / 'api.log'}")

    def cpu(self) -> dict[str, float]:
        return {
            "api": cpu_s(self.api.pid),
            "executors": sum(cpu_s(e.pid) for e in self.executors),
            "prefect": cpu_s(self.prefect.pid),
        }

    def stop_children(self) -> None:
        """Stop the API and the executors (an executor ends the runs in flight first); Prefect stays."""
        for child in [self.api, *self.executors]:
            if child.poll() is None:
                child.terminate()
        for child in [self.api, *self.executors]:
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                child.kill()

    def stop(self) -> None:
        from flows.server import stop_server

        self.stop_children()
        stop_server(self.prefect)


class Client:
    """Submits runs over HTTP, retrying a 429 after its Retry-After; counts what the API answered."""

    def __init__(self, api_url: str) -> None:
        import httpx

        self.api_url = api_url
        self.http = httpx.Client(base_url=api_url, timeout=120, limits=httpx.Limits(max_connections=SUBMITTERS + 8))
        self.answers: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _count(self, what: str) -> None:
        with self._lock:
            self.answers[what] += 1

    def submit(self, document: dict[str, Any]) -> str | None:
        import httpx

        while True:
            try:
                answer = self.http.post("/v1/runs", json={"document": document, "inputs": {}})
            except httpx.HTTPError as exc:
                self._count(type(exc).__name__)
                return None
            self._count(str(answer.status_code))
            if answer.status_code == 429:
                time.sleep(float(answer.headers.get("retry-after", "1")))
                continue
            return answer.json()["id"] if answer.status_code == 202 else None

    def state(self, run_id: str) -> str:
        answer = self.http.get(f"/v1/runs/{run_id}")
        if answer.status_code >= 500:
            self._count(str(answer.status_code))
        return answer.json()["state"] if answer.status_code == 200 else "unknown"

    def wait(self, run_id: str, poll_s: float, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.state(run_id)
            if state in FINISHED:
                return state
            time.sleep(poll_s)
        return "timeout"

    def states(self, run_ids: set[str]) -> Counter[str]:
        """The states of many runs, read through the list endpoint a page at a time."""
        found: dict[str, str] = {}
        offset = 0
        while True:
            page = self.http.get("/v1/runs", params={"limit": 500, "offset": offset}).json()
            found.update({item["id"]: item["state"] for item in page["items"] if item["id"] in run_ids})
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                break
        return Counter(found.get(r, "missing") for r in run_ids)


class HealthProbe:
    """GET /healthz every ``every_s`` from a thread of its own; its latencies, and the probes that failed."""

    def __init__(self, api_url: str, every_s: float = 0.1) -> None:
        import httpx

        self.http = httpx.Client(base_url=api_url, timeout=30)
        self.every_s = every_s
        self.latencies: list[float] = []
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._probe, daemon=True)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _probe(self) -> None:
        import httpx

        while not self._stop.wait(self.every_s):
            t = time.perf_counter()
            try:
                ok = self.http.get("/healthz").status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                self.latencies.append(time.perf_counter() - t)
            else:
                self.failed += 1


def idle_latency(platform: Platform, client: Client) -> tuple[list[float], dict[str, float]]:
    """Submit-to-completed seconds of each run, and each process's CPU seconds per run."""
    doc = trivial_document()
    client.wait(client.submit(doc) or "", 0.02, 120)  # warm: the executor's first flow and render worker
    before = platform.cpu()
    latencies = []
    for _ in range(LATENCY_RUNS):
        t = time.perf_counter()
        run_id = client.submit(doc)
        state = client.wait(run_id, 0.02, 120) if run_id else "failed"
        if state != "completed":
            view = client.http.get(f"/v1/runs/{run_id}").json() if run_id else {}
            raise RuntimeError(f"a trivial run ended {state}: {view.get('error') or view.get('state_message')}")
        latencies.append(time.perf_counter() - t)
    after = platform.cpu()
    return latencies, {k: (after[k] - before[k]) / LATENCY_RUNS for k in after}


def wide_run(platform: Platform, client: Client) -> tuple[float, str]:
    t = time.perf_counter()
    run_id = client.submit(branches_document(BRANCHES, DEPTH))
    state = client.wait(run_id, 0.5, RUN_TIMEOUT_S) if run_id else "not submitted"
    return time.perf_counter() - t, state


def concurrent_runs(platform: Platform, client: Client) -> dict[str, Any]:
    doc = trivial_document()
    before, t = platform.cpu(), time.perf_counter()
    with HealthProbe(platform.api_url) as probe:
        with ThreadPoolExecutor(SUBMITTERS) as pool:
            ids = [r for r in pool.map(lambda _: client.submit(doc), range(CONCURRENT))]
        submitted = time.perf_counter() - t
        ids_set = {r for r in ids if r}
        done = _wait_all(ids_set, t + RUN_TIMEOUT_S)
    wall = time.perf_counter() - t
    after = platform.cpu()
    states = client.states(ids_set)
    return {
        "wall": wall,
        "submitted": submitted,
        "done": done,
        "states": states,
        "not_submitted": ids.count(None),
        "health": probe.latencies,
        "health_failed": probe.failed,
        "cpu": {k: after[k] - before[k] for k in after},
    }


def _wait_all(run_ids: set[str], deadline: float) -> int:
    """Wait until the queue has finished every run (its own record, read from the platform database)."""
    from sqlalchemy import func, select

    from cxmpute.db import session_scope
    from flows.store import WorkflowRunRow as R

    done = 0
    ids = list(run_ids)
    while time.perf_counter() < deadline:
        done = 0
        with session_scope() as session:
            for i in range(0, len(ids), 500):
                done += (
                    session.scalar(
                        select(func.count()).select_from(R).where(R.id.in_(ids[i : i + 500]), R.status == "done")
                    )
                    or 0
                )
        if done == len(ids):
            break
        time.sleep(0.5)
    return done


def handwritten_runs(platform: Platform) -> dict[str, Any]:
    """The same three tasks as hand-written Prefect flows, as many, run concurrently from this process's threads
    (as many threads as one executor runs runs at once); results persisted as the compiled nodes' are."""
    from prefect import flow, task
    from prefect.context import SettingsContext, get_settings_context
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, PREFECT_UI_URL

    from agxnt.templating import render_template
    from cxmpute.settings import get_settings

    @task(persist_result=True)
    def take(value: str) -> str:
        return value

    @task(persist_result=True)
    async def render(template: str, variables: dict) -> str:
        return await render_template(template, variables, get_settings())

    @task(persist_result=True)
    def output(value: str) -> str:
        return value

    @flow(name="handwritten-trivial", persist_result=True)
    def trivial(x: str) -> str:
        return output.submit(render.submit("<{{ x }}>", {"x": take.submit(x)})).result()

    # The settings the executor runs flows under (no flow-run heartbeats, no UI link), so the engines compare.
    current = get_settings_context()
    derived = current.settings.copy_with_update(updates={PREFECT_UI_URL: "", PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
    failures = Counter()

    def one(_: int) -> None:
        try:
            with SettingsContext(profile=current.profile, settings=derived):
                if trivial("hello") != "<hello>":
                    failures["wrong answer"] += 1
        except Exception as exc:  # noqa: BLE001 - counted, as the subject's failures are
            failures[type(exc).__name__] += 1

    one(0)  # warm
    failures.clear()

    before, t = (time.process_time(), cpu_s(platform.prefect.pid)), time.perf_counter()
    with ThreadPoolExecutor(get_settings().executor_concurrency) as pool:
        list(pool.map(one, range(CONCURRENT)))
    wall = time.perf_counter() - t
    return {
        "wall": wall,
        "failures": failures,
        "cpu": {
            "flows (this process)": time.process_time() - before[0],
            "prefect": cpu_s(platform.prefect.pid) - before[1],
        },
    }


def per_run_costs(runs: int = 10) -> dict[str, float]:
    """Requests to Prefect and CPU for one trivial run, measured in this process: submit (what the API does for
    POST /v1/runs) and execution by an executor serving from a thread here, then one read of the run's view
    (what GET /v1/runs/{id} does)."""
    import httpx

    from flows.executor import Executor
    from flows.history import read_run
    from flows.runner import start_run, wait_run

    requests = Counter()
    sync_send, async_send = httpx.Client.send, httpx.AsyncClient.send

    def counted(request: httpx.Request) -> None:
        if request.url.path.startswith("/api"):
            requests["prefect"] += 1

    def send(self, request, **kw):
        counted(request)
        return sync_send(self, request, **kw)

    async def asend(self, request, **kw):
        counted(request)
        return await async_send(self, request, **kw)

    executor = Executor(8)
    thread = threading.Thread(target=executor.serve, name="executor", daemon=True)
    thread.start()
    doc = trivial_document()
    try:
        wait_run(start_run(doc), timeout=120)
        httpx.Client.send, httpx.AsyncClient.send = send, asend
        submit_cpu = run_cpu = view_cpu = 0.0
        total = Counter()
        for _ in range(runs):
            c = time.process_time()
            run_id = start_run(doc)
            submit_cpu += time.process_time() - c
            submitted = requests["prefect"]
            c = time.process_time()
            while not _finished(run_id):
                time.sleep(0.02)
            run_cpu += time.process_time() - c
            executed = requests["prefect"]
            c = time.process_time()
            read_run(run_id)
            view_cpu += time.process_time() - c
            total.update({"submit": submitted, "execute": executed - submitted, "view": requests["prefect"] - executed})
            requests.clear()
    finally:
        httpx.Client.send, httpx.AsyncClient.send = sync_send, async_send
        executor.stop()
        thread.join(30)
    return {
        "submit_requests": total["submit"] / runs,
        "execute_requests": total["execute"] / runs,
        "view_requests": total["view"] / runs,
        "submit_cpu": submit_cpu / runs,
        "execute_cpu": run_cpu / runs,
        "view_cpu": view_cpu / runs,
    }


def _finished(run_id: str) -> bool:
    from cxmpute.db import session_scope
    from flows.store import WorkflowRunRow

    with session_scope() as session:
        row = session.get(WorkflowRunRow, run_id)
        return row is not None and row.status == "done"


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="cxmpute-bench-runs-"))
    os.environ["CXMPUTE_HOME"] = str(home)
    from cxmpute.settings import apply_environment_defaults

    apply_environment_defaults()
    from cxmpute.db import migrate

    migrate()
    platform = Platform(home)
    client = Client(platform.api_url)
    try:
        latencies, idle = idle_latency(platform, client)
        cpu1 = platform.cpu()
        wide_s, wide_state = wide_run(platform, client)
        cpu2 = platform.cpu()
        # Interleaved: the subject, the baseline, on the same Prefect server in the same run.
        subject = concurrent_runs(platform, client)
        baseline = handwritten_runs(platform)
        platform.stop_children()  # so that only the executor measured here claims the next runs
        costs = per_run_costs()
    finally:
        platform.stop()

    wide_cpu = {k: cpu2[k] - cpu1[k] for k in cpu1}
    nodes = BRANCHES * DEPTH
    s_rate, b_rate = subject["done"] / subject["wall"], CONCURRENT / baseline["wall"]
    s_cpu, b_cpu = subject["cpu"], baseline["cpu"]
    failed = (
        subject["not_submitted"]
        + sum(n for s, n in subject["states"].items() if s != "completed")
        + sum(n for a, n in client.answers.items() if not a.isdigit() or int(a) >= 500)
    )
    health = subject["health"] or [float("nan")]
    write_section(
        "Workflow runs",
        "\n\n".join(
            [
                f"API (uvicorn serving `web.app`), {EXECUTORS} `cxmpute executor start` process(es) "
                "(32 runs at once each) and one Prefect server (SQLite) as separate processes on this machine, "
                "clients over HTTP. Trivial run: input → template → output (the template renders in the template "
                "worker, as every template does). CPU columns are seconds of CPU of each process, read from /proc, so "
                "a loaded machine shows in the wall times but less in the CPU. "
                f"Load average at the end: {os.getloadavg()[0]:.1f}.",
                "**One trivial run on an idle platform**, submit (POST /v1/runs) to completed "
                f"(polling GET /v1/runs/{{id}} every 20 ms), {LATENCY_RUNS} runs one after another.",
                table(
                    ["p50 s", "p99 s", "API CPU s / run", "executor CPU s / run", "Prefect CPU s / run"],
                    [
                        [
                            f"{statistics.median(latencies):.3f}",
                            f"{pct(latencies, 99):.3f}",
                            f"{idle['api']:.3f}",
                            f"{idle['executors']:.3f}",
                            f"{idle['prefect']:.3f}",
                        ]
                    ],
                ),
                f"**A {nodes}-node workflow**: {BRANCHES} branches of {DEPTH} chained template nodes, one run through "
                "POST /v1/runs and an executor.",
                table(
                    ["state", "wall s", "nodes/s", "executor CPU s", "Prefect CPU s"],
                    [
                        [
                            wide_state,
                            f"{wide_s:.1f}",
                            f"{nodes / wide_s:.1f}",
                            f"{wide_cpu['executors']:.1f}",
                            f"{wide_cpu['prefect']:.1f}",
                        ]
                    ],
                ),
                f"**{CONCURRENT} concurrent trivial runs**, submitted at once by {SUBMITTERS} client threads (a 429 is "
                "retried after its Retry-After); baseline: the same three tasks as a hand-written Prefect flow, "
                f"{CONCURRENT} flow runs from 32 threads of one process (under the executor's Prefect settings) "
                "against the "
                "same Prefect server.",
                table(
                    ["what", "wall s", "runs/s", "failures", "CPU s (process: s)"],
                    [
                        [
                            "hand-written Prefect flows (baseline)",
                            f"{baseline['wall']:.1f}",
                            f"{b_rate:.1f}",
                            str(sum(baseline["failures"].values())),
                            ", ".join(f"{k}: {v:.1f}" for k, v in b_cpu.items()),
                        ],
                        [
                            "workflow runs through the API and executors",
                            f"{subject['wall']:.1f}",
                            f"{s_rate:.1f}",
                            str(failed),
                            ", ".join(f"{k}: {v:.1f}" for k, v in s_cpu.items()),
                        ],
                    ],
                ),
                f"Submitting took {subject['submitted']:.1f} s; API answers: "
                f"{', '.join(f'{k}×{v}' for k, v in sorted(client.answers.items()))}; final states: "
                f"{', '.join(f'{k}×{v}' for k, v in sorted(subject['states'].items()))}. `/healthz` during the load: "
                f"p50 {statistics.median(health) * 1000:.0f} ms, p99 {pct(health, 99) * 1000:.0f} ms over "
                f"{len(subject['health'])} probes, {subject['health_failed']} failed.",
                "**Where a trivial run's time goes** (measured in one process, an executor serving from a thread, "
                "10 runs): "
                "HTTP requests to the Prefect API (task-run states and logs go over its events websocket, not counted) "
                "and CPU per run.",
                table(
                    ["step", "HTTP requests to Prefect", "CPU ms"],
                    [
                        [what, f"{costs[step + '_requests']:.1f}", f"{costs[step + '_cpu'] * 1000:.0f}"]
                        for step, what in [
                            ("submit", "submit (`start_run`, as POST /v1/runs)"),
                            ("execute", "execute (executor, all three nodes)"),
                            ("view", "read the run's view (as GET /v1/runs/{id})"),
                        ]
                    ],
                ),
            ]
        ),
    )


if __name__ == "__main__":
    main()

"""Dispatch of node-level jobs: a burst of trivial jobs through three provider worker processes — match, lease,
push over the workers' job streams, run, settle — against two baselines measured in the same run, rounds
interleaved: Prefect background tasks (``task.delay()`` served by three task-worker processes) and Prefect
tasks submitted in a flow in this process.

Everything is real: a Prefect server, the platform API as its own process (``cxmpute serve``), three
``cxmpute provider start`` processes that joined through it, and the dispatcher in this process against the
platform's database, as a run executor uses it. The jobs are ``io.input`` agents (they return their input), so
the figures are the platform's overhead, not the agents'.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, task

from bench.results import table, write_section

JOBS = int(os.environ.get("CXMPUTE_BENCH_DISPATCH_JOBS", "1000"))
ROUNDS = int(os.environ.get("CXMPUTE_BENCH_DISPATCH_ROUNDS", "2"))
WORKERS = 3
CONCURRENCY = 16  # each provider worker's, and each baseline task worker's


@task(persist_result=True)
def trivial(submitted: float) -> float:
    """Seconds from submission to this body starting."""
    return time.time() - submitted


@flow
def in_process(n: int) -> list[float]:
    futures = [trivial.submit(time.time()) for _ in range(n)]
    return [f.result() for f in futures]


def _serve_tasks() -> None:
    """A baseline task worker: what `prefect task-worker` runs, serving ``trivial``."""
    from prefect.task_worker import TaskWorker

    async def serve() -> None:
        await TaskWorker(trivial, limit=CONCURRENCY).start()

    asyncio.run(serve())


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ts(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _wait_http(url: str, proc: subprocess.Popen, log: Path) -> None:
    import httpx

    for _ in range(1200):
        try:
            if httpx.get(url, timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(log.read_text()[-3000:])
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="cxmpute-bench-dispatch-"))
    os.environ["CXMPUTE_HOME"] = str(home / "platform")
    os.environ["CXMPUTE_HEARTBEAT_INTERVAL_S"] = "5"
    os.environ["CXMPUTE_ALLOW_ANONYMOUS"] = "false"
    from cxmpute.db import reset_engines
    from cxmpute.settings import apply_environment_defaults, get_settings, reset_settings

    reset_settings()  # an earlier benchmark in this process may have read other settings
    reset_engines()
    apply_environment_defaults()

    import httpx
    from eth_account import Account
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    from compute.chain import get_chain
    from compute.chain.client import web3_at
    from compute.ledger import Acct, post
    from compute.network import Network
    from compute.provisions import Resources
    from compute.store import Store
    from compute.worker import jobs
    from compute.worker.dispatch import Dispatcher
    from compute.worker.jobs import JobSpec
    from cxmpute.ports import free_port
    from flows.server import client_env, start_server, stop_server, use_api

    prefect_port = free_port()
    prefect = start_server(home / "prefect", prefect_port)
    prefect_url = f"http://127.0.0.1:{prefect_port}/api"
    use_api(prefect_url)
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    os.environ["CXMPUTE_API_URL"] = api
    procs: list[subprocess.Popen] = []

    def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
        proc = subprocess.Popen(argv, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(proc)
        return proc

    base_env = {**os.environ, **client_env(prefect_url)}
    api_proc = spawn([sys.executable, "-m", "cxmpute.cli", "serve", "--port", str(port)], base_env, home / "api.log")
    try:
        _wait_http(api + "/healthz", api_proc, home / "api.log")
        w3 = web3_at(api + "/v1/chain/rpc", get_settings().resolved_operator_token())
        for i in range(WORKERS):
            wallet = Account.create()
            w3.eth.wait_for_transaction_receipt(
                w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": wallet.address, "value": 10 * 10**18})
            )
            wdir = home / f"provider-{i}"
            wdir.mkdir()
            spawn(
                [
                    sys.executable,
                    "-m",
                    "cxmpute.cli",
                    "provider",
                    "start",
                    "--name",
                    f"bench-{i}",
                    "--price-gwei",
                    "1",
                    "--cpu",
                    str(CONCURRENCY),
                    "--memory-mb",
                    "65536",
                    "--stake-eth",
                    "2",
                    "--concurrency",
                    str(CONCURRENCY),
                ],
                {
                    **base_env,
                    "CXMPUTE_HOME": str(wdir),
                    "PREFECT_HOME": str(wdir / "prefect"),
                    "CXMPUTE_WALLET_KEY": wallet.key.to_0x_hex(),
                },
                wdir / "worker.log",
            )
        for i in range(WORKERS):  # the baseline's task workers read parameters from this process's result storage
            spawn(
                [sys.executable, "-c", "from bench.bench_dispatch import _serve_tasks; _serve_tasks()"],
                {
                    **base_env,
                    "PYTHONPATH": str(Path(__file__).parent.parent),
                    "PREFECT_LOCAL_STORAGE_PATH": str(PREFECT_LOCAL_STORAGE_PATH.value()),
                },
                home / f"task-worker-{i}.log",
            )
        active = {"kind": "agent", "status": "active"}
        while len(httpx.get(api + "/v1/market/provisions", params=active).json()) < WORKERS:
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError("\n".join(p.read_text()[-2000:] for p in home.glob("**/*.log")))
            time.sleep(0.2)

        net = Network(Store(), get_chain())  # this process's own, on the platform's database, as an executor's
        owner = Account.create().address
        with net.store.write() as session:
            post(
                session,
                key=f"bench-{owner}",
                kind="deposit",
                entries=[(Acct("chain", "bench"), -(10**15)), (Acct("user", owner), 10**15)],
            )
        dispatcher = Dispatcher(net)
        serial = iter(range(10**9))

        def spec() -> JobSpec:
            i = next(serial)
            return JobSpec(
                kind="agent",
                owner=owner,
                work_key=f"bench:{i}:node:1",
                price_max_gwei=10,
                timeout_s=300,
                resources=Resources(cpu=1, memory_mb=256),
                payload={"agent": "io.input", "version": "1", "inputs": {"value": i}},
            )

        async def dispatch_burst(n: int) -> tuple[float, list[jobs.JobOut], dict[str, float]]:
            returned: dict[str, float] = {}

            async def one() -> jobs.JobOut:
                job = await dispatcher.run(spec())
                returned[job.id] = time.time()
                return job

            t0 = time.perf_counter()
            done = await asyncio.gather(*(one() for _ in range(n)))
            elapsed = time.perf_counter() - t0
            assert all(j.status == "done" for j in done), [j for j in done if j.status != "done"][:3]
            return n / elapsed, done, returned

        def prefect_burst(n: int) -> tuple[float, list[float]]:
            t0 = time.perf_counter()
            futures = [trivial.delay(time.time()) for _ in range(n)]
            waits = [f.result(timeout=600) for f in futures]
            return n / (time.perf_counter() - t0), waits

        def local_burst(n: int) -> tuple[float, list[float]]:
            t0 = time.perf_counter()
            waits = in_process(n)
            return n / (time.perf_counter() - t0), waits

        # Warm-up: connections, caches, the first stream and subscription hops.
        asyncio.run(dispatch_burst(3 * WORKERS * CONCURRENCY))
        prefect_burst(30)
        local_burst(30)

        rates: dict[str, list[float]] = {"dispatch": [], "prefect": [], "local": []}
        latency: dict[str, list[float]] = {"dispatch": [], "prefect": [], "local": []}
        stages: dict[str, list[float]] = {"claim": [], "push": [], "run": [], "wake": []}
        for _ in range(ROUNDS):
            per_s, done, returned = asyncio.run(dispatch_burst(JOBS))
            rates["dispatch"].append(per_s)
            for job in done:
                created, claimed, finished = _ts(job.created_at), _ts(job.claimed_at), _ts(job.finished_at)
                latency["dispatch"].append(job.started_ts - created)
                stages["claim"].append(claimed - created)
                stages["push"].append(job.started_ts - claimed)
                stages["run"].append(finished - job.started_ts)
                stages["wake"].append(returned[job.id] - finished)
            providers = {j.provider for j in done}
            for name, burst in (("prefect", prefect_burst), ("local", local_burst)):
                per_s, waits = burst(JOBS)
                rates[name].append(per_s)
                latency[name].extend(waits)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        stop_server(prefect)

    ms = lambda v: f"{v * 1000:.1f}"  # noqa: E731
    names = {
        "dispatch": f"Cxmpute dispatch: {WORKERS} provider workers (match, lease, push, run, settle)",
        "prefect": f"Prefect background tasks: `task.delay()`, {WORKERS} task workers (baseline)",
        "local": "Prefect tasks submitted in a flow in this process (baseline)",
    }
    rows = [
        [names[k], f"{statistics.median(rates[k]):.1f}", ms(_pct(latency[k], 0.5)), ms(_pct(latency[k], 0.99))]
        for k in names
    ]
    stage_rows = [
        [what, ms(_pct(stages[key], 0.5)), ms(_pct(stages[key], 0.99))]
        for key, what in (
            ("claim", "job recorded → claimed for delivery (API poller)"),
            ("push", "claimed → handler started on the worker (stream write, worker)"),
            ("run", "handler started → result accepted (run, report, meter, close lease)"),
            ("wake", "result accepted → dispatcher returns (job watcher)"),
        )
    ]
    body = (
        f"A burst of {JOBS} trivial jobs per path, {ROUNDS} rounds interleaved (jobs/s: median of the rounds; "
        "latencies pooled). Dispatch-to-start is, for Cxmpute, the job's record (lease placed) to its handler "
        "starting on the provider worker; for the baselines, `delay()`/`submit()` to the task body starting.\n\n"
        + table(["path", "jobs/s", "dispatch-to-start p50 ms", "p99 ms"], rows)
        + f"\n\nWhere a dispatched job's time goes (p50 / p99 ms), over {len(stages['run'])} jobs spread over "
        f"{len(providers)} providers:\n\n"
        + table(["stage", "p50 ms", "p99 ms"], stage_rows)
        + f"\n\nEach provider offers {CONCURRENCY} one-CPU slots and runs {CONCURRENCY} jobs at once, so at most "
        f"{WORKERS * CONCURRENCY} jobs are in flight; the rest of a burst waits in placement for capacity. All "
        f"of it — Prefect server (SQLite), platform API, the platform database (SQLite), this dispatcher and "
        f"the workers — shares this machine's {os.cpu_count()} cores."
    )
    write_section("Dispatch", body)


if __name__ == "__main__":
    main()

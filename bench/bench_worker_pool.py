"""Provider worker pool: how soon a node dispatched to a remote provider worker starts, vs an in-process
Prefect task on the same server in this run; and nodes per second through three provider workers.

Everything is real: a Prefect server, the platform API (uvicorn, in this process, sharing the network with
the dispatcher) and three `cxmpute provider start` processes that joined through it (signed in, staked on
the embedded chain over its JSON-RPC, published, heartbeating). The nodes are `io.template` renders, so the
figures are the platform's overhead, not the agents'.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.results import table, write_section

SAMPLES = int(os.environ.get("CXMPUTE_BENCH_POOL_SAMPLES", "60"))
BURST = int(os.environ.get("CXMPUTE_BENCH_POOL_BURST", "90"))
WORKERS = 3


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="cxmpute-bench-pool-"))
    os.environ["CXMPUTE_HOME"] = str(home / "platform")
    os.environ["CXMPUTE_HEARTBEAT_INTERVAL_S"] = "5"
    os.environ["CXMPUTE_ALLOW_ANONYMOUS"] = "false"
    from cxmpute.settings import apply_environment_defaults, get_settings

    apply_environment_defaults()

    import httpx
    import uvicorn
    from eth_account import Account
    from prefect import flow, task

    from compute.chain.client import web3_at
    from compute.ledger import Acct, post
    from compute.network import get_network
    from compute.provisions import Resources
    from compute.worker.dispatch import Dispatcher
    from compute.worker.jobs import JobSpec, list_for
    from cxmpute.ports import free_port
    from flows.server import client_env, start_server, stop_server, use_api
    from web.app import create_app

    prefect_port = free_port()
    prefect = start_server(home / "prefect", prefect_port)
    prefect_url = f"http://127.0.0.1:{prefect_port}/api"
    use_api(prefect_url)
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    os.environ["CXMPUTE_API_URL"] = api
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while True:
        try:
            if httpx.get(api + "/healthz", timeout=0.5).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)

    w3 = web3_at(api + "/v1/chain/rpc", get_settings().resolved_operator_token())
    procs = []
    for i in range(WORKERS):
        wallet = Account.create()
        w3.eth.wait_for_transaction_receipt(
            w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": wallet.address, "value": 10 * 10**18})
        )
        wdir = home / f"provider-{i}"
        wdir.mkdir()
        env = {
            **os.environ,
            "CXMPUTE_HOME": str(wdir),
            "PREFECT_HOME": str(wdir / "prefect"),
            "CXMPUTE_WALLET_KEY": wallet.key.to_0x_hex(),
            **client_env(prefect_url),
        }
        procs.append(
            subprocess.Popen(
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
                    "16",
                    "--memory-mb",
                    "65536",
                    "--stake-eth",
                    "2",
                    "--concurrency",
                    "16",
                ],
                env=env,
                stdout=open(wdir / "worker.log", "wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    net = get_network()
    while len(httpx.get(api + "/v1/market/provisions", params={"kind": "agent", "status": "active"}).json()) < WORKERS:
        time.sleep(0.2)
    owner = Account.create().address
    with net.store.write() as session:
        post(
            session,
            key=f"bench-{owner}",
            kind="deposit",
            entries=[(Acct("chain", "bench"), -(10**15)), (Acct("user", owner), 10**15)],
        )

    def spec(i: int) -> JobSpec:
        return JobSpec(
            kind="agent",
            owner=owner,
            work_key=f"bench:{i}",
            price_max_gwei=10,
            timeout_s=120,
            resources=Resources(cpu=1, memory_mb=256),
            payload={"agent": "io.template", "version": "1", "inputs": {"template": "{{ x }}!", "variables": {"x": i}}},
        )

    dispatcher = Dispatcher(net)

    async def remote_latency() -> list[float]:
        out = []
        for i in range(SAMPLES):
            t0 = time.time()
            job = await dispatcher.run(spec(i))
            assert job.status == "done", job
            out.append(job.started_ts - t0)
        return out

    async def burst() -> float:
        t0 = time.perf_counter()
        done = await asyncio.gather(*(dispatcher.run(spec(10_000 + i)) for i in range(BURST)))
        assert all(j.status == "done" for j in done)
        return BURST / (time.perf_counter() - t0)

    @task
    def started(t0: float) -> float:
        return time.time() - t0

    @flow
    def local_latency(n: int) -> list[float]:
        return [started.submit(time.time()).result() for _ in range(n)]

    try:
        asyncio.run(remote_latency())  # warm-up: connections, caches, first subscription hops
        remote = asyncio.run(remote_latency())
        local = local_latency(SAMPLES)
        per_s = asyncio.run(burst())
        providers = {j.provider for j in list_for(net.store, owner, "done", limit=BURST)}
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        server.should_exit = True
        stop_server(prefect)

    ms = lambda v: f"{v * 1000:.1f}"  # noqa: E731
    rows = [
        [
            "remote node on a provider worker",
            ms(_pct(remote, 0.5)),
            ms(_pct(remote, 0.99)),
            f"{_pct(remote, 0.5) / _pct(local, 0.5):.1f}x",
        ],
        ["in-process Prefect task (baseline)", ms(_pct(local, 0.5)), ms(_pct(local, 0.99)), "1.0x"],
    ]
    body = (
        f"Dispatch-to-start latency, {SAMPLES} sequential nodes each (time from dispatch — match, lease, job "
        "record, deferred task run — to the node starting on the worker; baseline: `task.submit()` to the task "
        "body starting, in a flow in this process):\n\n"
        + table(["path", "p50 ms", "p99 ms", "p50 vs baseline"], rows)
        + f"\n\nThroughput: {BURST} concurrent nodes through {WORKERS} provider workers: **{per_s:.1f} nodes/s** "
        f"(spread over {len(providers)} providers; each node = match + lease + dispatch + claim + run + "
        f"settle usage + close lease). Mean remote latency {statistics.mean(remote) * 1000:.1f} ms.\n\n"
        f"All of it — Prefect server (SQLite), platform API, dispatcher and the {WORKERS} workers — shares this "
        f"machine's {os.cpu_count()} cores; under the burst each node's Prefect orchestration (task run "
        "creation, websocket delivery with one ack per run, Pending/Running/Completed proposals) is what "
        "queues, not the nodes themselves (which run in milliseconds)."
    )
    write_section("Worker pool", body)


if __name__ == "__main__":
    main()

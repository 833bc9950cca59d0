"""The inference gateway's cost against calling the provider's server directly, in the same run: the fixed
overhead of a request (``max_tokens: 1``, not streamed, gateway and direct requests interleaved) and, at 16
concurrent streams, tokens per second and time to first token.

The platform API runs on uvicorn in this process (over a fresh SQLite database and the in-process chain, as
the tests run it), the provider's ``cxmpute inference serve`` in its own, registered for a staked inference
provision, and the load in a third process so the clients' CPU is not the API's. The API's CPU and its
database commits per gateway request are measured around each phase. By default the model is the small Llama
of :mod:`bench.bench_inference`; ``CXMPUTE_BENCH_INFERENCE_MODEL`` names another. ``CXMPUTE_BENCH_GATEWAY_REQUESTS``
sets the fixed-overhead requests per side (default 200), ``CXMPUTE_BENCH_GATEWAY_TOKENS`` the tokens per stream
(default 64); ``CXMPUTE_BENCH_GATEWAY_PRINT=1`` prints the section instead of writing it to RESULTS.md.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.bench_inference import PROMPTS, build_small_llm
from bench.results import table, write_section

REQUESTS = int(os.environ.get("CXMPUTE_BENCH_GATEWAY_REQUESTS", "200"))
TOKENS = int(os.environ.get("CXMPUTE_BENCH_GATEWAY_TOKENS", "64"))
STREAMS = 16
PER_STREAM = 2  # requests each of the concurrent clients sends in turn
ROUNDS = 5  # concurrent runs per side, alternating; the best of each side is compared, and each round's pair
PRICE = 1  # gwei per compute-unit-second


@dataclass
class Target:
    """Where the load goes: the gateway (``/v1`` of the API, the user's key) or the provider's server itself."""

    name: str
    url: str
    key: str


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# ---- the load (in its own process) ----------------------------------------------------------------------


def fixed(targets: list[Target], requests: int) -> dict[str, list[float]]:
    """``requests`` one-token completions to each target, interleaved (the first one of each not counted: it
    opens the connection): each one's latencies in ms."""
    from cxmpute.http import client

    body = {"model": "bench", "prompt": "Hello", "max_tokens": 1, "temperature": 0}
    clients = {t.name: client(t.url, timeout=120.0, headers={"Authorization": f"Bearer {t.key}"}) for t in targets}
    latencies: dict[str, list[float]] = {t.name: [] for t in targets}
    try:
        for i in range(-1, requests):
            for t in targets if i % 2 == 0 else targets[::-1]:
                start = time.perf_counter()
                clients[t.name].post("/v1/completions", json=body).raise_for_status()
                if i >= 0:
                    latencies[t.name].append((time.perf_counter() - start) * 1000)
    finally:
        for http in clients.values():
            http.close()
    return latencies


async def _stream(http: httpx.AsyncClient, prompt: str) -> tuple[int, float]:
    body = {
        "model": "bench",
        "prompt": prompt,
        "max_tokens": TOKENS,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start, first, tokens = time.perf_counter(), None, 0
    async with http.stream("POST", "/v1/completions", json=body) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            elif first is None:
                first = time.perf_counter() - start
    return tokens, first or 0.0


async def _concurrent(target: Target) -> tuple[int, float, list[float]]:
    from cxmpute.http import async_client

    limits = httpx.Limits(max_connections=STREAMS, max_keepalive_connections=STREAMS)
    async with async_client(
        target.url, timeout=600.0, limits=limits, headers={"Authorization": f"Bearer {target.key}"}
    ) as http:

        async def one_client(i: int) -> list[tuple[int, float]]:
            return [await _stream(http, PROMPTS[(i + r) % len(PROMPTS)]) for r in range(PER_STREAM)]

        start = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(one_client(i) for i in range(STREAMS))) for r in rs]
        elapsed = time.perf_counter() - start
    return sum(t for t, _ in results), elapsed, [f for _, f in results]


def concurrent(target: Target) -> tuple[int, float, list[float]]:
    """``STREAMS`` clients streaming ``PER_STREAM`` completions each: tokens, seconds, times to first token."""
    return asyncio.run(_concurrent(target))


# ---- the platform (in this process) ----------------------------------------------------------------------


def _serve(source: str, device: str, home: Path, wallet, provision: str, api: str) -> tuple[subprocess.Popen, str]:
    """The provider's ``cxmpute inference serve``, registering its endpoint for ``provision``."""
    from cxmpute.ports import free_port
    from tests.support.inference import SERVER_KEY

    port = free_port()
    env = {
        **os.environ,
        "CXMPUTE_HOME": str(home),
        "CXMPUTE_WALLET_KEY": wallet.account.key.hex(),
        "CXMPUTE_API_URL": api,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cxmpute.cli",
            "inference",
            "serve",
            "--model",
            f"bench={source}",
            "--port",
            str(port),
            "--device",
            device,
            "--max-batch",
            "32",
            "--provision",
            provision,
            "--api-key",
            SERVER_KEY,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return proc, f"http://127.0.0.1:{port}"


def _provider(http: httpx.Client, net) -> tuple[object, str]:
    """A staked provider with an inference provision roomy enough for every stream at once (a request holds one
    vCPU while it runs); returns its wallet and the provision's id."""
    from compute import receipts
    from compute.providers.hardware import HardwareProfile
    from tests.support.inference import STAKE_WEI
    from tests.support.wallets import Wallet

    wallet = Wallet.funded(net.chain)
    auth = wallet.login(http)
    hw = HardwareProfile(cpu_count=64, cpu_model="bench", memory_mb=65536, disk_gb=100, benchmark_score=100.0)
    issued = int(time.time())
    typed = {
        "provider": wallet.address,
        "name": "bench",
        "region": "local",
        "profileHash": hw.digest(),
        "issuedAt": issued,
    }
    http.post(
        "/v1/providers",
        headers=auth,
        json={
            "name": "bench",
            "region": "local",
            "profile": hw.model_dump(),
            "issued_at": issued,
            "signature": receipts.sign(net.domain, "ProviderRegistration", typed, account=wallet.account),
        },
    ).raise_for_status()
    tx = wallet.call_vault("stake", STAKE_WEI)
    http.post("/v1/providers/stake", json={"tx_hash": tx}, headers=auth).raise_for_status()
    resp = http.post(
        "/v1/provisions",
        headers=auth,
        json={
            "kind": "inference",
            "resources": {"cpu": 4 * STREAMS, "memory_mb": 16384},
            "price_gwei": PRICE,
            "models": ["bench"],
        },
    )
    resp.raise_for_status()
    return wallet, resp.json()["id"]


@dataclass
class Phase:
    """What one phase cost the API process."""

    cpu_s: float
    commits: int


def _measured(pool, commits: list[int], fn, *args) -> tuple[object, Phase]:
    before_cpu, before_commits = cpu_s(os.getpid()), commits[0]
    result = pool.apply(fn, args)
    return result, Phase(cpu_s(os.getpid()) - before_cpu, commits[0] - before_commits)


def main() -> None:
    from sqlalchemy import event

    from compute.inference.backends import default_device
    from cxmpute.db import get_engine
    from tests.support.inference import SERVER_KEY, platform_api, user_key, wait_served

    device = default_device()
    source = os.environ.get("CXMPUTE_BENCH_INFERENCE_MODEL")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        label = source or "small Llama built from a config (random weights)"
        source = source or str(build_small_llm(root / "small-llm"))
        with platform_api(root / "platform.db") as (http, net), multiprocessing.get_context("spawn").Pool(1) as pool:
            commits = [0]
            event.listen(get_engine(net.store.url), "commit", lambda _conn: commits.__setitem__(0, commits[0] + 1))
            wallet, provision = _provider(http, net)
            (root / "provider").mkdir()
            proc, url = _serve(source, device, root / "provider", wallet, provision, str(http.base_url))
            try:
                wait_served(http, {"bench": 1}, [], wait=300)
                _, _, key = user_key(http, net)
                gateway, direct = Target("gateway", str(http.base_url), key), Target("direct", url, SERVER_KEY)
                pool.apply(fixed, ([gateway, direct], 5))  # warm: code paths loaded, the load's process started
                latencies, fixed_cost = _measured(pool, commits, fixed, [gateway, direct], REQUESTS)
                runs: dict[str, list[tuple[tuple[int, float, list[float]], Phase]]] = {"gateway": [], "direct": []}
                for _ in range(ROUNDS):
                    for target in (direct, gateway):
                        runs[target.name].append(_measured(pool, commits, concurrent, target))
            finally:
                proc.terminate()
                proc.wait(30)
    _report(label, device, latencies, fixed_cost, runs)


def _report(
    label: str,
    device: str,
    latencies: dict[str, list[float]],
    fixed_cost: Phase,
    runs: dict[str, list[tuple[tuple[int, float, list[float]], Phase]]],
) -> None:
    direct, gateway = latencies["direct"], latencies["gateway"]
    overhead = [pct(gateway, p) - pct(direct, p) for p in (50, 99)]
    fixed_rows = [
        [name, len(values), round(pct(values, 50), 1), round(pct(values, 99), 1)]
        for name, values in (("direct", direct), ("gateway", gateway))
    ]
    fixed_rows.append(["gateway − direct", "", round(overhead[0], 1), round(overhead[1], 1)])
    best = {name: max(side, key=lambda run: run[0][0] / run[0][1]) for name, side in runs.items()}
    rate = {name: tokens / seconds for name, ((tokens, seconds, _), _) in best.items()}
    ttft = {name: pct(firsts, 50) * 1000 for name, ((_, _, firsts), _) in best.items()}
    stream_rows = [
        [
            name,
            STREAMS * PER_STREAM,
            tokens,
            round(seconds, 2),
            round(rate[name], 1),
            round(ttft[name], 1),
            round(pct(firsts, 99) * 1000, 1),
            f"{rate[name] / rate['direct']:.2f}",
            f"{ttft[name] / ttft['direct']:.2f}",
        ]
        for name, ((tokens, seconds, firsts), _) in best.items()
    ]
    # Each round's gateway run against the direct run just before it: how much the best-of comparison varies.
    paired = sorted(
        (g[0][0] / g[0][1]) / (d[0][0] / d[0][1]) for d, g in zip(runs["direct"], runs["gateway"], strict=True)
    )
    streams_cost = best["gateway"][1]
    requests = STREAMS * PER_STREAM
    body = f"""Model: {label} on {device}. The API (uvicorn, SQLite) and the provider's `cxmpute inference serve`
run on this machine; the load runs in its own process.

Fixed cost of a request: {len(direct)} one-token completions (`max_tokens: 1`, not streamed) each way,
gateway and direct interleaved; latency in ms.

{table(["path", "requests", "p50 ms", "p99 ms"], fixed_rows)}

The API spent {fixed_cost.cpu_s * 1000 / (len(gateway) + 1):.1f} ms of CPU and
{fixed_cost.commits / (len(gateway) + 1):.2f} database commits per gateway request (the direct requests cost it
nothing).

{STREAMS} concurrent streams, {PER_STREAM} requests each, {TOKENS} tokens per request; each side run {ROUNDS} times,
alternating, its best run shown; ratios against direct in the same run.

{
        table(
            [
                "path",
                "requests",
                "tokens",
                "seconds",
                "tokens/s",
                "median first token ms",
                "p99 first token ms",
                "x direct tokens/s",
                "x direct first token",
            ],
            stream_rows,
        )
    }

Round by round (each gateway run against the direct run before it), gateway tokens/s was
{", ".join(f"{r:.2f}" for r in paired)}× direct (median {paired[len(paired) // 2]:.2f}×): on two cores the
model and the API share the CPU, so every millisecond the API spends is taken from the model.

In the best gateway run the API spent {streams_cost.cpu_s * 1000 / requests:.1f} ms of CPU and
{streams_cost.commits / requests:.2f} database commits per stream."""
    if os.environ.get("CXMPUTE_BENCH_GATEWAY_PRINT"):
        print(body)
    else:
        write_section("Inference gateway overhead", body)


if __name__ == "__main__":
    main()

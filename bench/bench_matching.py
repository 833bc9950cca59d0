"""Matching throughput: the bucketed price index against a naive linear scan, and end to end on the database.

Scale with CXMPUTE_BENCH_PROVISIONS / CXMPUTE_BENCH_REQUESTS (defaults 100,000 and 10,000).
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bench.results import table, write_section
from compute.market.demand import MatchRequest
from compute.market.index import ProvisionIndex, Slot
from compute.provisions import KINDS, Resources

PROVISIONS = int(os.environ.get("CXMPUTE_BENCH_PROVISIONS", 100_000))
REQUESTS = int(os.environ.get("CXMPUTE_BENCH_REQUESTS", 10_000))
BASELINE_REQUESTS = min(REQUESTS, int(os.environ.get("CXMPUTE_BENCH_BASELINE_REQUESTS", 300)))
DB_PROVISIONS = int(os.environ.get("CXMPUTE_BENCH_DB_PROVISIONS", 20_000))
DB_REQUESTS = int(os.environ.get("CXMPUTE_BENCH_DB_REQUESTS", 500))
THREADS = 4
BENCH_USER = "0x" + "be" * 20
GPUS = ["A100", "H100", "L4"]
MODELS = [f"model-{i}" for i in range(10)]
REGIONS = ["eu", "us", "asia", "sa", "af"]


def make_slots(n: int, rng: random.Random) -> list[Slot]:
    slots = []
    for _ in range(n):
        kind = rng.choice(KINDS)
        gpu = rng.choice(GPUS) if rng.random() < 0.2 else ""
        cpu = rng.choice([4, 8, 16, 32, 64])
        slots.append(
            Slot(
                id=str(uuid.UUID(int=rng.getrandbits(128))),
                provider=f"0x{rng.getrandbits(160):040x}",
                kind=kind,
                cpu=cpu,
                memory_mb=cpu * 4096,
                gpu_count=rng.choice([1, 2, 4, 8]) if gpu else 0,
                gpu_model=gpu,
                disk_gb=500,
                free_cpu=cpu,
                free_memory_mb=cpu * 4096,
                free_gpu=0,
                free_disk_gb=500,
                price=rng.randint(50, 1000),
                reputation=round(rng.random(), 2),
                models=frozenset(rng.sample(MODELS, 3)) if kind == "inference" else frozenset(),
                region=rng.choice(REGIONS),
            )
        )
        slots[-1].free_gpu = slots[-1].gpu_count
    return slots


def make_requests(n: int, rng: random.Random) -> list[MatchRequest]:
    requests = []
    for _ in range(n):
        kind = rng.choice(KINDS)
        gpu = rng.random() < 0.1
        low = rng.choice([0, 0, 100, 200])
        requests.append(
            MatchRequest(
                kind=kind,
                resources=Resources(
                    cpu=rng.choice([1, 2, 4, 8]),
                    memory_mb=rng.choice([1024, 4096, 16384]),
                    gpu_count=1 if gpu else 0,
                    gpu_model=rng.choice(GPUS) if gpu and rng.random() < 0.5 else "",
                ),
                model=rng.choice(MODELS) if kind == "inference" else None,
                region=rng.choice(REGIONS) if rng.random() < 0.3 else None,
                price_min_gwei=low,
                price_max_gwei=low + rng.choice([100, 300, 800]),
                duration_s=rng.randint(60, 3600),
            )
        )
    return requests


def naive_best(slots: list[Slot], req: MatchRequest, now: float) -> Slot | None:
    """The baseline: look at every provision, keep the best-ranked one that satisfies the request."""
    end = now + req.span_s
    best = None
    for slot in slots:
        if (
            slot.kind == req.kind
            and slot.status == "active"
            and req.price_min_gwei <= slot.price <= req.price_max_gwei
            and slot.fits(req, end)
            and (best is None or slot.key < best.key)
        ):
            best = slot
    return best


def build(slots: list[Slot]) -> ProvisionIndex:
    index = ProvisionIndex()
    for slot in slots:
        index.upsert(Slot(**{f: getattr(slot, f) for f in Slot.__slots__}))
    return index


def place_all(index: ProvisionIndex, requests: list[MatchRequest], now: float) -> tuple[int, list[float]]:
    placed, lat = 0, []
    for req in requests:
        t0 = time.perf_counter()
        slot = index.best(req, now)
        if slot is not None:
            index.reserve(slot.id, req.resources)
            placed += 1
        lat.append(time.perf_counter() - t0)
    return placed, lat


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 100 else max(values)


def run_index(slots: list[Slot], requests: list[MatchRequest], now: float) -> dict:
    t0 = time.perf_counter()
    index = build(slots)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    placed, lat = place_all(index, requests, now)
    wall = time.perf_counter() - t0
    return {
        "build_s": build_s,
        "placed": placed,
        "decisions_per_s": len(requests) / wall,
        "placements_per_s": placed / wall,
        "p99_ms": p99(lat) * 1000,
    }


def run_threads(slots: list[Slot], requests: list[MatchRequest], now: float) -> dict:
    index = build(slots)
    chunks = [requests[i::THREADS] for i in range(THREADS)]
    results: list[tuple[int, list[float]]] = [(0, [])] * THREADS

    def worker(i: int) -> None:
        results[i] = place_all(index, chunks[i], now)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    placed = sum(r[0] for r in results)
    lat = [x for r in results for x in r[1]]
    return {
        "placed": placed,
        "decisions_per_s": len(requests) / wall,
        "placements_per_s": placed / wall,
        "p99_ms": p99(lat) * 1000,
    }


def run_baseline(slots: list[Slot], requests: list[MatchRequest], now: float) -> dict:
    """Naive scan on the same evolving state as the index, checking both pick the same provision."""
    index = build(slots)
    state = [index.get(s.id) for s in slots]
    placed, lat, disagreements = 0, [], 0
    t_naive = 0.0
    for req in requests:
        t0 = time.perf_counter()
        naive = naive_best(state, req, now)
        elapsed = time.perf_counter() - t0
        t_naive += elapsed
        lat.append(elapsed)
        fast = index.best(req, now)
        disagreements += (naive is None) != (fast is None) or (naive is not None and naive.key != fast.key)
        if naive is not None:
            index.reserve(naive.id, req.resources)
            placed += 1
    return {
        "placed": placed,
        "decisions_per_s": len(requests) / t_naive,
        "placements_per_s": placed / t_naive,
        "p99_ms": p99(lat) * 1000,
        "disagreements": disagreements,
    }


def run_database(rng: random.Random) -> dict:
    """Market.place end to end on SQLite: index pick, conditional capacity UPDATE, escrow hold, lease row."""
    from compute.ledger import Acct, post
    from compute.market.matching import Market, NoMatchError
    from compute.models import Provider, Provision, utcnow
    from compute.receipts import Domain
    from compute.store import Store
    from cxmpute.settings import get_settings

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        slots = make_slots(DB_PROVISIONS, rng)
        with store.write() as s:
            providers = {slot.provider for slot in slots}
            s.add_all(
                Provider(
                    address=p,
                    name="bench",
                    region="eu",
                    profile={},
                    benchmark_score=0.0,
                    registered_at=utcnow(),
                    last_heartbeat_ts=0,
                    heartbeats=0,
                    leases_completed=0,
                    leases_failed=0,
                    reputation=0.5,
                )
                for p in providers
            )
            s.flush()
            s.add_all(
                Provision(
                    id=x.id,
                    provider=x.provider,
                    kind=x.kind,
                    cpu=x.cpu,
                    memory_mb=x.memory_mb,
                    gpu_count=x.gpu_count,
                    gpu_model=x.gpu_model,
                    disk_gb=x.disk_gb,
                    free_cpu=x.cpu,
                    free_memory_mb=x.memory_mb,
                    free_gpu=x.gpu_count,
                    free_disk_gb=x.disk_gb,
                    price_gwei=x.price,
                    models=sorted(x.models),
                    images=[],
                    region=x.region,
                    available_until=None,
                    status="active",
                    created_at=utcnow(),
                    updated_at=utcnow(),
                )
                for x in slots
            )
            post(
                s,
                key="bench-funds",
                kind="deposit",
                entries=[(Acct("chain", "bench"), -(10**18)), (Acct("user", BENCH_USER), 10**18)],
            )
        market = Market(store, Domain(chain_id=get_settings().chain_id, verifying_contract="0x" + "11" * 20))
        t0 = time.perf_counter()
        market.sync(force=True)
        load_s = time.perf_counter() - t0
        placed, lat = 0, []
        t0 = time.perf_counter()
        for req in make_requests(DB_REQUESTS, rng):
            t1 = time.perf_counter()
            try:
                market.place(BENCH_USER, req)
                placed += 1
            except NoMatchError:  # part of the workload
                pass
            lat.append(time.perf_counter() - t1)
        wall = time.perf_counter() - t0
    return {
        "load_s": load_s,
        "placed": placed,
        "decisions_per_s": DB_REQUESTS / wall,
        "placements_per_s": placed / wall,
        "p99_ms": p99(lat) * 1000,
    }


def main() -> None:
    rng = random.Random(7)
    slots = make_slots(PROVISIONS, rng)
    requests = make_requests(REQUESTS, rng)
    now = time.time()
    idx = run_index(slots, requests, now)
    thr = run_threads(slots, requests, now)
    base = run_baseline(slots, requests[:BASELINE_REQUESTS], now)
    db = run_database(rng)
    speedup = idx["placements_per_s"] / base["placements_per_s"]
    rows = [
        [
            "naive linear scan (baseline)",
            f"{BASELINE_REQUESTS:,}",
            f"{base['placed']:,}",
            f"{base['placements_per_s']:,.0f}",
            f"{base['decisions_per_s']:,.0f}",
            f"{base['p99_ms']:.2f}",
            "1.0x",
        ],
        [
            "bucketed price index, 1 thread",
            f"{REQUESTS:,}",
            f"{idx['placed']:,}",
            f"{idx['placements_per_s']:,.0f}",
            f"{idx['decisions_per_s']:,.0f}",
            f"{idx['p99_ms']:.3f}",
            f"{speedup:,.0f}x",
        ],
        [
            f"bucketed price index, {THREADS} threads",
            f"{REQUESTS:,}",
            f"{thr['placed']:,}",
            f"{thr['placements_per_s']:,.0f}",
            f"{thr['decisions_per_s']:,.0f}",
            f"{thr['p99_ms']:.3f}",
            f"{thr['placements_per_s'] / base['placements_per_s']:,.0f}x",
        ],
        [
            f"Market.place on SQLite ({DB_PROVISIONS:,} provisions)",
            f"{DB_REQUESTS:,}",
            f"{db['placed']:,}",
            f"{db['placements_per_s']:,.0f}",
            f"{db['decisions_per_s']:,.0f}",
            f"{db['p99_ms']:.2f}",
            f"{db['placements_per_s'] / base['placements_per_s']:,.1f}x",
        ],
    ]
    body = table(
        ["matcher", "requests", "placed", "placements/s", "decisions/s", "p99 latency (ms)", "vs baseline"], rows
    )
    body += (
        f"\n\n{PROVISIONS:,} provisions (5 kinds, 20% with GPUs, 10 models, 5 regions, asks 50-1,000 gwei/CU-s), "
        f"{REQUESTS:,} requests with random resources, price ranges, regions and models; each placement "
        f"reserves capacity, so later requests see a fuller market. Goal: at least 20,000 placements/s. "
        f"Index build: {idx['build_s']:.2f}s. The baseline is timed on the first {BASELINE_REQUESTS:,} "
        f"requests (a full run would take minutes) on the same evolving state as the index, which chose the "
        f"same provision in {BASELINE_REQUESTS - base['disagreements']}/{BASELINE_REQUESTS} of them. "
        f"'{THREADS} threads' shares one index under its lock (the GIL serialises the work; it shows the "
        f"locking holds up, not a parallel speed-up). The last row is the durable path: the index proposes, "
        f"a conditional UPDATE confirms the capacity, the escrow is held and the lease written, one SQLite "
        f"transaction per placement (index loaded from the database in {db['load_s']:.2f}s). Scale with "
        f"CXMPUTE_BENCH_PROVISIONS, CXMPUTE_BENCH_REQUESTS, CXMPUTE_BENCH_BASELINE_REQUESTS, "
        f"CXMPUTE_BENCH_DB_PROVISIONS, CXMPUTE_BENCH_DB_REQUESTS."
    )
    write_section("Compute matching", body)

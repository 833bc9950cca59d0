"""Durable placements per second: Market.place (group commit, batch-signed receipts) against raw SQL.

Each placement takes capacity from a provision, writes the lease, moves its escrow from the user into a new
escrow account and records the ledger transaction with its two entries, committed durably. Three ways,
interleaved round by round on the same database so background load hits them alike:

* raw SQL: those writes with the DB driver directly (sqlite3, psycopg), one transaction per placement,
  no matching and no receipt: the floor;
* raw SQL + one EIP-712 signature per placement (signed before the transaction, as a receipt must be);
* Market.place: index match, group commit, one signature per batch.

Scale with CXMPUTE_BENCH_PLACEMENTS (per caller and round, default 600), CXMPUTE_BENCH_PLACEMENT_CALLERS
(default 8) and CXMPUTE_BENCH_PLACEMENT_ROUNDS (default 3). PostgreSQL is measured when it answers on
127.0.0.1:5432 (CXMPUTE_BENCH_PG: a libpq connection string).
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench.results import table, write_section

PER_CALLER = int(os.environ.get("CXMPUTE_BENCH_PLACEMENTS", 600))
CALLERS = int(os.environ.get("CXMPUTE_BENCH_PLACEMENT_CALLERS", 8))
ROUNDS = int(os.environ.get("CXMPUTE_BENCH_PLACEMENT_ROUNDS", 3))
PG = os.environ.get("CXMPUTE_BENCH_PG", "host=127.0.0.1 port=5432 dbname=test user=postgres")
GOAL = 3750
CPU_PER_PROVISION = 4096
PROVISIONS_PER_WAY = CALLERS * 4
PRICE = 10
DURATION_S = 60
UNITS = 2  # 1 vCPU + one 4 GiB memory unit
VAULT = "0x" + "11" * 20


def _address(tag: str, i: int) -> str:
    return "0x" + f"{tag}{i:04x}".rjust(40, "0")


class Bed:
    """One database: providers, provisions and funded users for each way of placing, kept apart."""

    def __init__(self, url: str, dialect: str, connect: Callable[[], object]):
        from compute.ledger import Acct, post
        from compute.market.matching import Market
        from compute.models import Provider, Provision, utcnow
        from compute.receipts import Domain
        from compute.store import Store
        from cxmpute.settings import get_settings

        self.dialect, self.connect = dialect, connect
        self.domain = Domain(chain_id=get_settings().chain_id, verifying_contract=VAULT)
        self.store = Store(url)
        # Each way gets its own provisions (of its own kind, so the market never matches the raw ways' ones)
        # and its own users, one per caller.
        self.provisions: dict[str, list[str]] = {}
        self.users: dict[str, list[str]] = {}
        with self.store.write() as s:
            for w, (way, kind) in enumerate([("raw", "vm"), ("signed", "container"), ("market", "function")]):
                provider = _address(f"{w + 1}f", 0)
                s.add(
                    Provider(
                        address=provider,
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
                )
                s.flush()
                ids = [str(uuid.uuid4()) for _ in range(PROVISIONS_PER_WAY)]
                s.add_all(
                    Provision(
                        id=i,
                        provider=provider,
                        kind=kind,
                        cpu=CPU_PER_PROVISION,
                        memory_mb=CPU_PER_PROVISION * 4096,
                        gpu_count=0,
                        gpu_model="",
                        disk_gb=0,
                        free_cpu=CPU_PER_PROVISION,
                        free_memory_mb=CPU_PER_PROVISION * 4096,
                        free_gpu=0,
                        free_disk_gb=0,
                        price_gwei=PRICE,
                        models=[],
                        images=[],
                        region="eu",
                        available_until=None,
                        status="active",
                        capacity_group=i,
                        created_at=utcnow(),
                        updated_at=utcnow(),
                    )
                    for i in ids
                )
                self.provisions[way] = ids
                self.users[way] = [_address(f"{w + 1}e", c) for c in range(CALLERS)]
                for user in self.users[way]:
                    post(
                        s,
                        key=f"bench-{user}",
                        kind="deposit",
                        entries=[(Acct("chain", "bench"), -(10**15)), (Acct("user", user), 10**15)],
                    )
        with self.store.read() as s:
            from sqlalchemy import select

            from compute.models import LedgerAccount

            self.account_ids = dict(
                s.execute(select(LedgerAccount.owner, LedgerAccount.id).where(LedgerAccount.kind == "user")).all()
            )
        self.market = Market(self.store, self.domain)
        self.market.sync(force=True)


def _stamp(dialect: str) -> object:
    now = datetime.now(UTC)
    # SQLAlchemy keeps SQLite datetimes as text in this form; PostgreSQL takes the value itself.
    return now.strftime("%Y-%m-%d %H:%M:%S.%f") if dialect == "sqlite" else now


def raw_place(bed: Bed, cur, user: str, provision: str, provider: str, signature: str, lease_id: str) -> None:
    """One placement's writes in one transaction, in the driver's own SQL."""
    q = "?" if bed.dialect == "sqlite" else "%s"
    amount = PRICE * UNITS * DURATION_S
    now = _stamp(bed.dialect)
    cur.execute("BEGIN IMMEDIATE" if bed.dialect == "sqlite" else "BEGIN")
    cur.execute(
        f"UPDATE cx_provisions SET free_cpu = free_cpu - 1, free_memory_mb = free_memory_mb - 1024, "
        f"updated_at = {q} WHERE id = {q} AND status = 'active' AND free_cpu >= 1 AND free_memory_mb >= 1024 "
        f"AND free_gpu >= 0 AND free_disk_gb >= 0 AND price_gwei = {q} AND available_until IS NULL",
        (now, provision, PRICE),
    )
    assert cur.rowcount == 1
    cur.execute(
        f'INSERT INTO cx_leases (id, "user", provider, provision_id, kind, cpu, memory_mb, gpu_count, '
        f"disk_gb, compute_units, price_gwei, term, duration_s, model, image, auto_renew, renewals, "
        f"escrow_gwei, metered_s, paid_gwei, status, end_reason, started_at, expires_at, ended_at, signature) "
        f"VALUES ({', '.join([q] * 26)})",
        (
            lease_id,
            user,
            provider,
            provision,
            "vm",
            1,
            1024,
            0,
            0,
            UNITS,
            PRICE,
            "seconds",
            DURATION_S,
            None,
            None,
            False,
            0,
            amount,
            0,
            0,
            "active",
            None,
            now,
            now,
            None,
            signature,
        ),
    )
    cur.execute(
        f"UPDATE cx_ledger_accounts SET balance = balance - {q} WHERE id = {q} AND balance >= {q}",
        (amount, bed.account_ids[user], amount),
    )
    assert cur.rowcount == 1
    cur.execute(
        f"INSERT INTO cx_ledger_accounts (kind, owner, balance) VALUES ('escrow', {q}, {q}) RETURNING id",
        (lease_id, amount),
    )
    escrow = cur.fetchone()[0]
    tx = str(uuid.uuid4())
    cur.execute(
        f"INSERT INTO cx_ledger_txs (id, idempotency_key, kind, reference, memo, signature, created_at) "
        f"VALUES ({q}, {q}, 'escrow-hold', {q}, '', {q}, {q})",
        (tx, f"hold:{lease_id}", lease_id, signature, now),
    )
    cur.execute(
        f"INSERT INTO cx_ledger_entries (tx_id, account_id, amount) VALUES ({q}, {q}, {q}), ({q}, {q}, {q})",
        (tx, bed.account_ids[user], -amount, tx, escrow, amount),
    )
    cur.execute("COMMIT")


def _sqlite_connect(path: str) -> Callable[[], object]:
    def connect():
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        # The platform's own settings (cxmpute.db): WAL, and SQLite's default full sync on commit.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    return connect


def run_way(bed: Bed, way: str, callers: int, per_caller: int) -> dict:
    from compute import receipts
    from compute.market.demand import MatchRequest
    from compute.provisions import Resources

    kinds = {"raw": "vm", "signed": "container", "market": "function"}
    request = MatchRequest(
        kind=kinds[way], resources=Resources(cpu=1, memory_mb=1024), price_max_gwei=PRICE, duration_s=DURATION_S
    )
    provider = bed.market.index.get(bed.provisions[way][0]).provider
    latencies: list[list[float]] = [[] for _ in range(callers)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(callers + 1)

    def caller(c: int) -> None:
        user = bed.users[way][c]
        conn = bed.connect() if way != "market" else None
        cur = conn.cursor() if conn is not None else None
        mine = bed.provisions[way][c::callers]
        barrier.wait()
        try:
            for n in range(per_caller):
                t0 = time.perf_counter()
                if way == "market":
                    bed.market.place(user, request)
                else:
                    lease_id = str(uuid.uuid4())
                    provision = mine[n % len(mine)]
                    signature = ""
                    if way == "signed":
                        signature = receipts.sign(
                            bed.domain,
                            "Lease",
                            {
                                "lease": lease_id,
                                "user": user,
                                "provider": provider,
                                "provision": provision,
                                "computeUnits": UNITS,
                                "priceGwei": PRICE,
                                "term": "seconds",
                                "durationS": DURATION_S,
                                "escrowGwei": PRICE * UNITS * DURATION_S,
                                "renewal": 0,
                            },
                        )
                    raw_place(bed, cur, user, provision, provider, signature, lease_id)
                latencies[c].append(time.perf_counter() - t0)
        except BaseException as exc:  # surfaced after the run
            errors.append(exc)
        finally:
            if conn is not None:
                conn.close()

    threads = [threading.Thread(target=caller, args=(c,)) for c in range(callers)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    lat = sorted(x for per in latencies for x in per)
    return {"per_s": len(lat) / wall, "p50_ms": lat[len(lat) // 2] * 1000, "p99_ms": lat[int(len(lat) * 0.99)] * 1000}


def measure(bed: Bed) -> dict[tuple[str, int], list[dict]]:
    """Every way each round, in turn; then each way alone with one caller for its latency."""
    runs: dict[tuple[str, int], list[dict]] = {}
    signed_per_caller = max(PER_CALLER // 4, 20)  # signing each placement is slow: fewer keep the round short
    for _ in range(ROUNDS):
        for way in ("raw", "signed", "market"):
            per_caller = signed_per_caller if way == "signed" else PER_CALLER
            runs.setdefault((way, CALLERS), []).append(run_way(bed, way, CALLERS, per_caller))
        for way in ("raw", "market"):
            runs.setdefault((way, 1), []).append(run_way(bed, way, 1, PER_CALLER // 2))
    return runs


def _pg_bed() -> tuple[Bed, Callable[[], None]] | None:
    try:
        import psycopg

        with psycopg.connect(PG, autocommit=True, connect_timeout=3) as conn:
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            conn.execute(f"CREATE SCHEMA {schema}")
    except Exception:  # no PostgreSQL here: SQLite only
        return None
    params = dict(part.split("=", 1) for part in PG.split())
    url = (
        f"postgresql+psycopg://{params.get('user', 'postgres')}@{params.get('host', '127.0.0.1')}:"
        f"{params.get('port', '5432')}/{params.get('dbname', 'test')}?options=-csearch_path%3D{schema}"
    )

    def connect():
        return psycopg.connect(PG, autocommit=True, options=f"-csearch_path={schema}")

    def drop() -> None:
        from cxmpute.db import reset_engines

        reset_engines()
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")

    return Bed(url, "postgresql", connect), drop


def _rows(engine: str, runs: dict[tuple[str, int], list[dict]]) -> list[list]:
    names = {"raw": "raw SQL (floor)", "signed": "raw SQL + 1 EIP-712 signature each", "market": "Market.place"}
    floor = {callers: statistics.median(r["per_s"] for r in runs[("raw", callers)]) for callers in (1, CALLERS)}
    rows = []
    for (way, callers), results in runs.items():
        per_s = statistics.median(r["per_s"] for r in results)
        rows.append(
            [
                engine,
                names[way],
                callers,
                f"{per_s:,.0f}",
                f"{min(r['per_s'] for r in results):,.0f}",
                f"{statistics.median(r['p50_ms'] for r in results):.2f}",
                f"{statistics.median(r['p99_ms'] for r in results):.2f}",
                f"{per_s / floor[callers]:.2f}x",
            ]
        )
    return sorted(rows, key=lambda row: (row[2] != CALLERS, list(names.values()).index(row[1])))


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        bed = Bed(f"sqlite:///{path}", "sqlite", _sqlite_connect(str(path)))
        rows += _rows("SQLite", measure(bed))
    pg = _pg_bed()
    if pg is not None:
        bed, drop = pg
        try:
            rows += _rows("PostgreSQL", measure(bed))
        finally:
            drop()
    body = table(
        ["database", "way", "callers", "placements/s (median)", "slowest round", "p50 ms", "p99 ms", "vs raw SQL"], rows
    )
    body += (
        f"\n\nEach placement: capacity taken from a provision, the lease row, the escrow moved from the user "
        f"to a new escrow account, a ledger transaction with two entries; committed durably (SQLite in WAL "
        f"with its default full sync, PostgreSQL with synchronous_commit on). Medians of {ROUNDS} rounds, the "
        f"three ways interleaved in each round on the same database; {PER_CALLER} placements per caller per "
        f"round ({max(PER_CALLER // 4, 20)} with a signature each). Raw SQL: one transaction per placement "
        f"through the driver, no matching, no receipt. Market.place: the index picks the provision, concurrent "
        f"placements are committed together in one transaction of multi-row statements, and each batch's "
        f"lease receipts share one EIP-712 signature over their Merkle root. Goal: at least {GOAL:,} "
        f"placements/s with {CALLERS} callers on each database. The 1-caller rows show a lone request waits "
        f"for no batch. Load average at the end: {os.getloadavg()[0]:.1f}. Scale with CXMPUTE_BENCH_PLACEMENTS, "
        f"CXMPUTE_BENCH_PLACEMENT_CALLERS, CXMPUTE_BENCH_PLACEMENT_ROUNDS."
    )
    write_section("Durable placement", body)

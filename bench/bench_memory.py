"""Memory: ingest throughput and search latency of MemoryStore against raw chromadb + sentence-transformers.

Both sides use the same embedding model (the bundled all-MiniLM-L6-v2), the same documents, the same
batch size and an embedded Chroma in a fresh temp dir, so the ratio is the cost of the platform layer
(validation, chunking, owner namespaces, metadata). The two sides take turns batch by batch and query
by query, so load from other processes on the machine falls on both alike.
Sizes: CXMPUTE_BENCH_MEMORY_SIZES (default 10000; "10000,100000" for the large run).
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.results import table, write_section

BATCH = 1000
QUERIES = 200
K = 5
WORDS = (
    "compute provider market price storage agent memory workflow network model token chain stake "
    "region latency gpu cpu container function inference ledger escrow chunk replica audit repair "
    "question answer passage search vector embedding schema table query owner thread message"
).split()


def _documents(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [f"Note {i}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))) + "." for i in range(n)]


def _queries(seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 6))) for _ in range(QUERIES)]


def _percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Ours:
    def __init__(self, home: Path):
        from agxnt.memory.items import DocumentIn
        from agxnt.memory.store import MemoryStore
        from cxmpute.settings import Settings

        self.doc = DocumentIn
        self.store = MemoryStore.from_settings(Settings(home=home))

    def add(self, start: int, texts: list[str]) -> None:
        self.store.write(
            "0xbench",
            "bench",
            [self.doc(id=f"d{start + j}", text=t, metadata={"batch": start // BATCH}) for j, t in enumerate(texts)],
        )

    def search(self, query: str) -> None:
        self.store.search("0xbench", "bench", query, k=K)


class Raw:
    def __init__(self, home: Path):
        import chromadb
        from chromadb.config import Settings as ChromaSettings
        from sentence_transformers import SentenceTransformer

        from agxnt.memory.embeddings import default_model_path

        self.model = SentenceTransformer(default_model_path())
        self.model.encode(["warm up the model once, outside the timings"], show_progress_bar=False)
        client = chromadb.PersistentClient(
            path=str(home / "raw-chroma"), settings=ChromaSettings(anonymized_telemetry=False)
        )
        self.col = client.create_collection(
            "bench", configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
        )

    def add(self, start: int, texts: list[str]) -> None:
        vectors = self.model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
        self.col.add(
            ids=[f"d{start + j}" for j in range(len(texts))],
            embeddings=vectors,
            documents=texts,
            metadatas=[{"batch": start // BATCH}] * len(texts),
        )

    def search(self, query: str) -> None:
        vector = self.model.encode([query], normalize_embeddings=True, show_progress_bar=False)
        self.col.query(query_embeddings=vector, n_results=K, include=["documents", "metadatas", "distances"])


def _timed(fn: Callable[..., None], *args: object) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def measure(n: int, queries: list[str]) -> dict[str, tuple[float, list[float]]]:
    docs = _documents(n)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        sides = {"ours": Ours(Path(tmp) / "ours"), "raw": Raw(Path(tmp))}
        ingest = {name: 0.0 for name in sides}
        latency: dict[str, list[float]] = {name: [] for name in sides}
        for b, start in enumerate(range(0, n, BATCH)):
            order = list(sides) if b % 2 == 0 else list(reversed(sides))
            for name in order:
                ingest[name] += _timed(sides[name].add, start, docs[start : start + BATCH])
        for q, query in enumerate(queries):
            order = list(sides) if q % 2 == 0 else list(reversed(sides))
            for name in order:
                latency[name].append(_timed(sides[name].search, query))
    return {name: (n / ingest[name], latency[name]) for name in sides}


def main() -> None:
    from agxnt.memory.embeddings import SentenceTransformerEmbedding

    SentenceTransformerEmbedding()(["warm up the model once, outside the timings"])
    sizes = [int(s) for s in os.environ.get("CXMPUTE_BENCH_MEMORY_SIZES", "10000").split(",") if s.strip()]
    queries = _queries()
    rows = []
    load_before = os.getloadavg()[0]
    for n in sizes:
        result = measure(n, queries)
        (our_ingest, our_lat), (raw_ingest, raw_lat) = result["ours"], result["raw"]
        for label, ours, raw in [
            ("ingest (docs/s, higher is better)", our_ingest, raw_ingest),
            ("search p50 (ms)", _percentile(our_lat, 50) * 1000, _percentile(raw_lat, 50) * 1000),
            ("search p99 (ms)", _percentile(our_lat, 99) * 1000, _percentile(raw_lat, 99) * 1000),
        ]:
            rows.append([f"{n:,}", label, f"{ours:.1f}", f"{raw:.1f}", f"{ours / raw:.2f}"])
        print(f"memory bench n={n}: ours {our_ingest:.0f} docs/s, raw {raw_ingest:.0f} docs/s", flush=True)
    body = (
        f"Short synthetic documents (9-17 words) with explicit ids and one metadata field, batches of {BATCH}, "
        f"{QUERIES} queries at k={K}; embedded Chroma in a temp dir and the bundled all-MiniLM-L6-v2 on CPU for "
        "both sides, which take turns batch by batch and query by query. The baseline is raw chromadb + "
        "sentence-transformers doing the same work in the same run; ratio = MemoryStore / raw "
        "(ingest: >1 is faster; latency: <1 is faster). Embedding dominates both sides' ingest. "
        f"Machine load average (1 min) {load_before:.1f} at the start and {os.getloadavg()[0]:.1f} at the end: "
        "absolute figures shrink under load from other work, the ratios are what carries over.\n\n"
        + table(["docs", "measure", "MemoryStore", "raw chromadb + s-t", "ratio"], rows)
        + "\n\nThe default run measures 10,000 documents (a few minutes on an idle 2-core machine, far longer "
        "under load). 100,000 documents take about ten times as long per side, so that size runs on request: "
        "`CXMPUTE_BENCH_MEMORY_SIZES=10000,100000 make bench`."
    )
    write_section("Memory", body)

"""Memory: ingest throughput and search latency of MemoryStore against raw chromadb + sentence-transformers.

Both sides use the same embedding model (the bundled all-MiniLM-L6-v2), the same documents, the same
batch size and an embedded Chroma in a fresh temp dir, so the ratio is the cost of the platform layer
(validation, chunking, owner namespaces, metadata). Sizes: CXMPUTE_BENCH_MEMORY_SIZES (default 10000;
set "10000,100000" for the large run, which takes several minutes per side on 2 cores).
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from bench.results import table, write_section

BATCH = 1000
QUERIES = 200
K = 5
WORDS = ("compute provider market price storage agent memory workflow network model token chain stake "
         "region latency gpu cpu container function inference ledger escrow chunk replica audit repair "
         "question answer passage search vector embedding schema table query owner thread message").split()


def _documents(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [f"Note {i}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))) + "." for i in range(n)]


def _queries(seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 6))) for _ in range(QUERIES)]


def _percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def _ours(docs: list[str], queries: list[str], home: Path) -> tuple[float, list[float]]:
    from agxnt.memory.store import DocumentIn, MemoryStore
    from cxmpute.settings import Settings

    store = MemoryStore.from_settings(Settings(home=home))
    owner, memory = "0xbench", "bench"
    start = time.perf_counter()
    for i in range(0, len(docs), BATCH):
        store.write(owner, memory, [DocumentIn(id=f"d{i + j}", text=t, metadata={"batch": i // BATCH})
                                    for j, t in enumerate(docs[i:i + BATCH])])
    ingest = len(docs) / (time.perf_counter() - start)
    latencies = []
    for q in queries:
        t0 = time.perf_counter()
        store.search(owner, memory, q, k=K)
        latencies.append(time.perf_counter() - t0)
    return ingest, latencies


def _raw(docs: list[str], queries: list[str], home: Path) -> tuple[float, list[float]]:
    import chromadb
    from chromadb.config import Settings as ChromaSettings
    from sentence_transformers import SentenceTransformer

    from agxnt.memory.embeddings import default_model_path

    model = SentenceTransformer(default_model_path())
    model.encode(["warm up the model once, outside the timings"], show_progress_bar=False)
    client = chromadb.PersistentClient(path=str(home / "raw-chroma"), settings=ChromaSettings(anonymized_telemetry=False))
    col = client.create_collection("bench", configuration={"hnsw": {"space": "cosine"}}, embedding_function=None)
    start = time.perf_counter()
    for i in range(0, len(docs), BATCH):
        batch = docs[i:i + BATCH]
        vectors = model.encode(batch, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
        col.add(ids=[f"d{i + j}" for j in range(len(batch))], embeddings=vectors, documents=batch,
                metadatas=[{"batch": i // BATCH}] * len(batch))
    ingest = len(docs) / (time.perf_counter() - start)
    latencies = []
    for q in queries:
        t0 = time.perf_counter()
        vector = model.encode([q], normalize_embeddings=True, show_progress_bar=False)
        col.query(query_embeddings=vector, n_results=K, include=["documents", "metadatas", "distances"])
        latencies.append(time.perf_counter() - t0)
    return ingest, latencies


def _warm_up() -> None:
    from agxnt.memory.embeddings import SentenceTransformerEmbedding

    SentenceTransformerEmbedding()(["warm up the model once, outside the timings"])


def main() -> None:
    sizes = [int(s) for s in os.environ.get("CXMPUTE_BENCH_MEMORY_SIZES", "10000").split(",") if s.strip()]
    queries = _queries()
    _warm_up()
    rows = []
    for n in sizes:
        docs = _documents(n)
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
            raw_ingest, raw_lat = _raw(docs, queries, Path(tmp))
            our_ingest, our_lat = _ours(docs, queries, Path(tmp))
        for label, ours, raw in [
            ("ingest (docs/s, higher is better)", our_ingest, raw_ingest),
            ("search p50 (ms)", _percentile(our_lat, 50) * 1000, _percentile(raw_lat, 50) * 1000),
            ("search p99 (ms)", _percentile(our_lat, 99) * 1000, _percentile(raw_lat, 99) * 1000),
        ]:
            rows.append([f"{n:,}", label, f"{ours:.1f}", f"{raw:.1f}", f"{ours / raw:.2f}"])
        print(f"memory bench n={n}: ours {our_ingest:.0f} docs/s, raw {raw_ingest:.0f} docs/s", flush=True)
    body = (
        f"Short synthetic documents (9-17 words), batches of {BATCH}, {QUERIES} queries at k={K}; embedded "
        "Chroma in a temp dir and the bundled all-MiniLM-L6-v2 on CPU for both sides. The baseline is raw "
        "chromadb + sentence-transformers doing the same work in the same run; ratio = MemoryStore / raw "
        "(ingest: >1 is faster, latency: <1 is faster).\n\n"
        + table(["docs", "measure", "MemoryStore", "raw chromadb + s-t", "ratio"], rows)
        + "\n\nThe default run measures 10,000 documents; 100,000 documents take several minutes per side on "
        "2 cores, so that size runs with `CXMPUTE_BENCH_MEMORY_SIZES=10000,100000 make bench`."
    )
    write_section("Memory", body)

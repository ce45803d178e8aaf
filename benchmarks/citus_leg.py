"""The Citus leg of the scaling benchmark: search QPS on one node against a collection sharded
over two Citus workers, the same chunks and queries, in the same run.

    python -m benchmarks.citus_leg [--rows 20000] [--queries 300] [--clients 8]

`citus_leg(root, ...)` returns the figures (benchmarks/scale.py calls it). One node: a plain
collection on the coordinator, an ordinary PostgreSQL table that Citus takes no part in.
Sharded: the same chunks in 2 shards, one on each worker; the coordinator sends each search to
both and merges. Searches go through the store (the service's SQL, settings and pool; no HTTP,
no query embedding) from `clients` concurrent tasks. All three servers run on this machine:
on 2 cores they share the same CPU, so this measures what the fan-out and merge cost, not what
more machines would add.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedsearch.core.distance import Distance
from embedsearch.core.vector_index import IndexSpec, IndexType
from embedsearch.store import ChunkRows, CollectionHandle, Store
from embedsearch.store.records import CollectionOptions
from tests.citus_cluster import VOCABULARY, CitusCluster, ensure_citus, synthetic_chunks

MODEL, DIMS, K = "all-MiniLM-L6-v2", 384, 10
WRITE_BATCH = 5000


@dataclass(frozen=True)
class LegResult:
    collection: str  # "1 node" or "2 Citus workers"
    mode: str  # dense (HNSW) or lexical (BM25)
    qps: float
    p50_ms: float  # one client alone


async def _load(store: Store, name: str, shards: int | None, rows: int) -> CollectionHandle:
    """The chunks, then the HNSW index built once (as a bulk load does)."""
    options = CollectionOptions(index=IndexSpec(IndexType.NONE), shards=shards)
    record = await store.registry.create(
        name, model=MODEL, dimensions=DIMS, embedder=f"local:{MODEL}", options=options
    )
    ids, documents, texts, vectors = synthetic_chunks(rows, DIMS)
    chunks = store.collection(record)
    for at in range(0, rows, WRITE_BATCH):
        part = slice(at, at + WRITE_BATCH)
        n = len(ids[part])
        await chunks.upsert(
            ChunkRows(ids[part], vectors[part], MODEL, texts[part], [""] * n, [], documents[part])
        )
    await store.indexes.build(
        record, IndexSpec(), rows=rows, probes=None, memory_cap_bytes=256 * 2**20
    )
    return chunks


async def _rate(chunks: CollectionHandle, mode: str, queries: list[Any], clients: int) -> float:
    """Searches per second with `clients` tasks sharing the queries."""
    pending = list(queries)

    async def client() -> None:
        while pending:
            await _search(chunks, mode, pending.pop())

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return len(queries) / (time.perf_counter() - started)


async def _search(chunks: CollectionHandle, mode: str, query: Any) -> None:
    if mode == "dense":
        await chunks.search(query, limit=K, distance=Distance.COSINE)
    else:
        await chunks.bm25.search(query, limit=K)


async def _p50_ms(chunks: CollectionHandle, mode: str, queries: list[Any]) -> float:
    took = []
    for query in queries:
        started = time.perf_counter()
        await _search(chunks, mode, query)
        took.append(time.perf_counter() - started)
    return 1000 * float(np.median(took))


async def _measure(url: str, rows: int, n_queries: int, clients: int) -> list[LegResult]:
    rng = np.random.default_rng(3)
    _, _, _, vectors = synthetic_chunks(rows, DIMS)
    dense = vectors[rng.integers(0, rows, n_queries)] + 0.3 * rng.standard_normal(
        (n_queries, DIMS)
    ).astype(np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    lexical = [" ".join(rng.choice(VOCABULARY, 2)) for _ in range(n_queries)]
    store = Store(url, max_size=clients)
    await store.open()
    try:
        await store.registry.ensure_default(model=MODEL, dimensions=DIMS, embedder=None)
        legs = {
            "1 node": await _load(store, "one_node", None, rows),
            "2 Citus workers": await _load(store, "sharded", 2, rows),
        }
        results = []
        for mode, queries in (("dense", list(dense)), ("lexical", lexical)):
            for name, chunks in legs.items():
                await _rate(chunks, mode, queries[:20], clients)  # warm caches and connections
                qps = await _rate(chunks, mode, queries, clients)
                p50 = await _p50_ms(chunks, mode, queries[:50])
                results.append(LegResult(name, mode, qps, p50))
        return results
    finally:
        await store.close()


def citus_leg(
    root: Path, *, rows: int = 20_000, queries: int = 300, clients: int = 8
) -> list[LegResult]:
    """Start a coordinator and two workers under `root` (Citus built first if need be), load
    the same chunks as a plain and as a sharded collection, and measure both."""
    ensure_citus()
    cluster = CitusCluster(root)
    try:
        return asyncio.run(_measure(cluster.url, rows, queries, clients))
    finally:
        cluster.destroy()


def print_results(results: list[LegResult], rows: int, clients: int) -> None:
    print(
        f"{rows} chunks, {clients} clients, searches through the store; the coordinator and"
        " both workers share this machine's CPU (fan-out and merge cost, not more machines):"
    )
    base = {r.mode: r.qps for r in results if r.collection == "1 node"}
    for r in results:
        print(
            f"  {r.mode:<8} {r.collection:<16} {r.qps:8.1f} searches/s"
            f"  ({r.qps / base[r.mode]:.2f}x 1 node)  p50 {r.p50_ms:6.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="citus-leg-") as root:
        results = citus_leg(Path(root), rows=args.rows, queries=args.queries, clients=args.clients)
    print_results(results, args.rows, args.clients)


if __name__ == "__main__":
    main()

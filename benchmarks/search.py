"""Search at scale: ANN recall@10 against exact search, and server-side search latency, on a
collection of --rows chunks (default 100k), for HNSW and IVFFlat with vector and halfvec.

    python -m benchmarks.search [--rows 100000] [--dataset DIR] [--queries 300]

Vectors: the dataset's documents embedded by the default model (onnx-int8), spread to --rows
by mixing pairs of real document vectors with a little noise (embedding 100k real chunks
would take ~20 min on 2 cores; the mixed vectors stay in the model's region of the space).
Queries: the dataset's real queries. The baseline is exact search (a full scan) in the same
run. Latency is the store's search call (SQL round trip and settings, vector in, hits out),
measured in process; the query embedding is reported on its own line.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import beir
from benchmarks.harness import report
from embedsearch.core.distance import Distance
from embedsearch.core.vector_index import IndexSpec, IndexType, Storage, lists_for, probes_for
from embedsearch.embedders.local import LocalEmbedder
from embedsearch.store import ChunkRows, Store
from embedsearch.store.embedded import EmbeddedPostgres
from embedsearch.store.records import CollectionOptions, CollectionRecord

WRITE_BATCH = 5000
EF_SWEEP = (None, 40, 150, 200)  # None: the service's default (CollectionHandle.ef_search)


def spread(docs: np.ndarray, rows: int, seed: int = 11) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(docs), rows), rng.integers(0, len(docs), rows)
    mix = rng.uniform(0.5, 1.0, (rows, 1)).astype(np.float32)
    vectors = mix * docs[a] + (1 - mix) * docs[b]
    vectors += 0.02 * rng.standard_normal(vectors.shape).astype(np.float32)
    vectors[: len(docs)] = docs[: min(len(docs), rows)]  # the real documents themselves too
    unit: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit


async def load(store: Store, name: str, storage: Storage, vectors: np.ndarray) -> CollectionRecord:
    options = CollectionOptions(storage=storage, index=IndexSpec(IndexType.NONE))
    record = await store.registry.create(
        name, model="all-MiniLM-L6-v2", dimensions=vectors.shape[1], embedder="-", options=options
    )
    collection = store.collection(record)
    for start in range(0, len(vectors), WRITE_BATCH):
        part = vectors[start : start + WRITE_BATCH]
        ids = [f"c{start + i}" for i in range(len(part))]
        rows = ChunkRows(ids, part, "all-MiniLM-L6-v2", [""] * len(part), [""] * len(part), [])
        await collection.upsert(rows)
    return record


async def build(store: Store, record: CollectionRecord, spec: IndexSpec, rows: int) -> Any:
    probes = None
    if spec.type is IndexType.IVFFLAT:
        spec = IndexSpec(IndexType.IVFFLAT, lists=lists_for(rows))
        probes = probes_for(spec.lists or 1)
    start = time.perf_counter()
    await store.indexes.build(record, spec, rows=rows, probes=probes, memory_cap_bytes=2 << 30)
    seconds = time.perf_counter() - start
    fresh = await store.registry.get(record.name)
    assert fresh is not None
    size = sum(i.size_bytes for i in await store.indexes.vector_indexes(record))
    return fresh, seconds, size


async def measure(
    store: Store,
    record: CollectionRecord,
    queries: np.ndarray,
    *,
    exact: bool,
    ef_search: int | None = None,
) -> tuple[list[list[str]], list[float]]:
    collection = store.collection(record)  # the record's layout, probes included
    found, times = [], []
    for query in queries:
        start = time.perf_counter()
        hits = await collection.search(
            query,
            limit=10,
            distance=Distance.COSINE,
            exact=exact,
            ef_search=ef_search,
        )
        times.append(time.perf_counter() - start)
        found.append([hit.chunk_id for hit in hits])
    return found, times


def percentile(times: list[float], q: float) -> float:
    return float(np.percentile(times, q) * 1000)


async def run(args: argparse.Namespace) -> None:
    data = beir.load(args.dataset)
    cache = Path(tempfile.mkdtemp(prefix="embedsearch-search-"))
    embedder = LocalEmbedder("all-MiniLM-L6-v2", backend="onnx-int8", cache_dir=cache / "cache")
    print(f"embedding {len(data.doc_texts)} documents and {args.queries} queries ...")
    docs = embedder.embed(data.doc_texts).vectors
    query_texts = data.query_texts[: args.queries]
    queries = embedder.embed(query_texts).vectors
    embed_times = []
    for text in query_texts[:100]:
        start = time.perf_counter()
        embedder.embed([text])
        embed_times.append(time.perf_counter() - start)
    vectors = spread(docs, args.rows)

    server = EmbeddedPostgres(cache / "pgdata")
    store = Store(server.url)
    await store.open()
    await store.registry.ensure_default(
        model="all-MiniLM-L6-v2", dimensions=vectors.shape[1], embedder=None
    )
    results: list[tuple[str, str, str]] = []
    try:
        for storage in args.storage:
            start = time.perf_counter()
            record = await load(store, f"bench_{storage.value}", storage, vectors)
            print(
                f"{storage.value}: loaded {args.rows} rows in {time.perf_counter() - start:.1f} s"
            )
            truth, exact_times = await measure(store, record, queries, exact=True)
            exact_p50 = percentile(exact_times, 50)
            results.append(
                (
                    f"{storage.value} exact scan p50 / p95",
                    f"{exact_p50:.2f} / {percentile(exact_times, 95):.2f} ms",
                    "1.00x (baseline)",
                )
            )
            for index_type in (IndexType.HNSW, IndexType.IVFFLAT):
                spec = IndexSpec(index_type, args.m, args.ef_construction)
                record, seconds, size = await build(store, record, spec, args.rows)
                label = f"{storage.value} {index_type.value}"
                results.append((f"{label} build", f"{seconds:.1f} s, {size / 2**20:.0f} MiB", ""))
                await measure(store, record, queries[:20], exact=False)  # warm the cache
                sweep = EF_SWEEP if index_type is IndexType.HNSW else (None,)
                for ef in sweep:
                    found, times = await measure(store, record, queries, exact=False, ef_search=ef)
                    recall = statistics.mean(
                        len(set(a) & set(b)) / max(len(b), 1)
                        for a, b in zip(found, truth, strict=True)
                    )
                    p50 = percentile(times, 50)
                    setting = f" efSearch={ef}" if ef else " (default)"
                    results.append(
                        (
                            f"{label}{setting} recall@10 | p50 / p95",
                            f"{recall:.4f} | {p50:.2f} / {percentile(times, 95):.2f} ms",
                            f"{exact_p50 / p50:.1f}x faster than exact",
                        )
                    )
            await store.registry.drop(record.name)
    finally:
        await store.close()
        server.stop()
    results.append(
        (
            "query embedding p50 (onnx-int8)",
            f"{percentile(embed_times, 50):.2f} ms",
            "(add to the search for end to end)",
        )
    )
    print(f"\n{args.rows} chunks, {len(queries)} queries, limit 10, default settings:")
    report(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, default=beir.DEFAULT_DATASET)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--m", type=int, default=IndexSpec.m, help="HNSW m")
    parser.add_argument("--ef-construction", type=int, default=IndexSpec.ef_construction)
    parser.add_argument(
        "--storage", type=Storage, nargs="+", default=[Storage.VECTOR, Storage.HALFVEC]
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

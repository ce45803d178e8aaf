"""Lexical (BM25) and hybrid search at scale, and what BM25's statistics cost writes.

    python -m benchmarks.lexical [--rows 100000] [--queries 300] [--write-rows N]

Texts: SciFact's documents (title + text) cut by the project's chunker for the default model
(~10k real chunks of ~200 words), then spread to --rows by synthetic chunks, each made of runs
of sentences from 2-3 random SciFact documents and as long as a random real chunk, so term
statistics look like real scientific text (common and rare words alike). Vectors: the
documents embedded by the default model (onnx-int8) and spread by mixing pairs, as in
benchmarks/search.py; a chunk's vector is not its text's (no quality is measured here: that
is `embedsearch eval` on the real chunks).

Writes: the first --write-rows rows go through `CollectionHandle.upsert` in batches of
WRITE_BATCH into two collections created alike (no ANN index during the load, as a large
ingest defers it), one as created, with the BM25 triggers, and one with its triggers
disabled (`ALTER TABLE ... DISABLE TRIGGER USER`), batch by batch in alternating order so
noise hits both; the rest of the rows then go into the first. The model's own chunks/s on a
sample of the same texts, measured in the same run, gives the full ingest cost per chunk
(model + write), which is what `embedsearch ingest` sees.

Searches: SciFact's real queries, against the first collection once its HNSW index is built.
Query vectors are embedded beforehand and not timed. Each timing is the store's call
(statement round trips, hits out), measured in process; for every query the variants run
one after another in rotating order. Baselines in the same run: the lexical ranking BM25
replaced (ts_rank over the same GIN-matched any-word candidates, the SQL below) and the
dense search alone. Lexical is timed before and after `Bm25.compact()` (deltas left by the
load against none).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
from psycopg import sql

from benchmarks import beir
from benchmarks.harness import report
from benchmarks.search import percentile, spread
from embedsearch.config import Settings
from embedsearch.core.chunking import ChunkingOptions, split
from embedsearch.core.constants import HYBRID_CANDIDATES
from embedsearch.core.fusion import Fusion, fuse
from embedsearch.core.vector_index import IndexSpec, IndexType
from embedsearch.embedders import Embedder, build_embedder
from embedsearch.store import ChunkRows, SearchHit, Store
from embedsearch.store.bm25 import Bm25, Pruning
from embedsearch.store.embedded import EmbeddedPostgres
from embedsearch.store.records import CollectionOptions, CollectionRecord
from embedsearch.store.sql.bm25 import COUNT_DELTAS, QUERY_STATISTICS

WRITE_BATCH = 400  # about one ingest batch (ingest/pipeline.py: ~300-400 chunks)
MODEL_SAMPLE = 1000  # chunk texts for the model-alone rate
LIMIT = 10
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(])")

# The lexical ranking before BM25 (store/sql/search.py at ba07609): any of the query's words,
# websearch syntax for "phrases" and -exclusions, ranked by length-normalized ts_rank.
TS_RANK = sql.SQL(r"""
SELECT chunk_id, ts_rank(content_tsv, q, 1) AS score, content, metadata, document_id
FROM {table}, (
    SELECT CASE
        WHEN %(text)s ~ '"|(^|\s)-\S' THEN websearch_to_tsquery('english', %(text)s)
        ELSE (
            SELECT coalesce(string_agg(quote_literal(lexeme), ' | '), '')::tsquery
            FROM unnest(tsvector_to_array(to_tsvector('english', %(text)s))) AS lexeme
        )
    END
) AS query (q)
WHERE content_tsv @@ q
ORDER BY score DESC, chunk_id
LIMIT %(limit)s""")


def compose(real: list[str], documents: list[str], rows: int, seed: int = 7) -> list[str]:
    """The real chunks, then synthetic ones up to `rows`: runs of sentences from 2-3 random
    documents, as many words as a random real chunk."""
    rng = np.random.default_rng(seed)
    sentences = [SENTENCE.split(doc) for doc in documents]
    lengths = [len(chunk.split()) for chunk in real]
    texts = real[:rows]
    while len(texts) < rows:
        target = lengths[rng.integers(len(lengths))]
        sources = [sentences[i] for i in rng.choice(len(documents), rng.integers(2, 4))]
        cursors = [int(rng.integers(len(s))) for s in sources]
        parts: list[str] = []
        words = 0
        while words < target:
            k = len(parts) % len(sources)  # a sentence from each source in turn
            sentence = sources[k][cursors[k] % len(sources[k])]
            cursors[k] += 1
            parts.append(sentence)
            words += len(sentence.split())
        texts.append(" ".join(parts))
    return texts


def rows_of(texts: list[str], vectors: np.ndarray, start: int, stop: int) -> ChunkRows:
    part = texts[start:stop]
    ids = [f"c{i:06d}" for i in range(start, stop)]
    return ChunkRows(ids, vectors[start:stop], "all-MiniLM-L6-v2", part, [""] * len(part), [])


async def create(store: Store, name: str, dimensions: int) -> CollectionRecord:
    options = CollectionOptions(index=IndexSpec(IndexType.NONE))
    return await store.registry.create(
        name, model="all-MiniLM-L6-v2", dimensions=dimensions, embedder="-", options=options
    )


async def timed(work: Awaitable[object]) -> float:
    start = time.perf_counter()
    await work
    return time.perf_counter() - start


async def load(
    store: Store, texts: list[str], vectors: np.ndarray, write_rows: int
) -> tuple[CollectionRecord, float, float, float]:
    """The rows into the collection searched later; the first `write_rows` also into one
    without BM25 triggers, batches alternating. Returns rows/s with, without and for the rest."""
    dims = vectors.shape[1]
    with_stats = await create(store, "lex_bm25", dims)
    without = await create(store, "lex_plain", dims)
    async with store.database.writing() as conn:
        await conn.execute(
            sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(sql.Identifier(without.table))
        )
    a, b = store.collection(with_stats), store.collection(without)
    seconds_a = seconds_b = 0.0
    for n, start in enumerate(range(0, write_rows, WRITE_BATCH)):
        rows = rows_of(texts, vectors, start, min(start + WRITE_BATCH, write_rows))
        if n % 2 == 0:
            seconds_a += await timed(a.upsert(rows))
            seconds_b += await timed(b.upsert(rows))
        else:
            seconds_b += await timed(b.upsert(rows))
            seconds_a += await timed(a.upsert(rows))
    rest = 0.0
    for start in range(write_rows, len(texts), WRITE_BATCH):
        rest += await timed(a.upsert(rows_of(texts, vectors, start, start + WRITE_BATCH)))
    async with store.database.writing() as conn:  # its disk and cache back for the searches
        await conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(without.table)))
    left = len(texts) - write_rows
    return with_stats, write_rows / seconds_a, write_rows / seconds_b, left / rest if rest else 0.0


def model_rate(embedder: Embedder, texts: list[str]) -> float:
    sample = texts[:: max(1, len(texts) // MODEL_SAMPLE)][:MODEL_SAMPLE]
    embedder.embed(sample[:64])  # warm-up
    start = time.perf_counter()
    embedder.embed(sample)
    return len(sample) / (time.perf_counter() - start)


async def ts_rank(store: Store, record: CollectionRecord, text: str, limit: int) -> list[SearchHit]:
    statement = TS_RANK.format(table=sql.Identifier(record.table))
    async with store.database.reading() as conn:
        rows = await (await conn.execute(statement, {"text": text, "limit": limit})).fetchall()
    return [SearchHit(r[0], float(r[1]), r[2], r[3] or {}, r[4]) for r in rows]


Variant = Callable[[int], Awaitable[object]]


async def measure(
    variants: dict[str, Variant], queries: int, warm: int = 20
) -> dict[str, list[float]]:
    """Per variant, the seconds of each query; the variants take turns going first."""
    names = list(variants)
    for q in range(min(warm, queries)):
        for name in names:
            await variants[name](q)
    times: dict[str, list[float]] = {name: [] for name in names}
    for q in range(queries):
        shift = q % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(await timed(variants[name](q)))
    return times


def latency(
    label: str, times: list[float], baseline: list[float] | None, against: str
) -> tuple[str, str, str]:
    p50 = percentile(times, 50)
    value = f"{p50:.2f} / {percentile(times, 95):.2f} ms"
    if baseline is None:
        return (f"{label} p50 / p95", value, "1.00x (baseline)")
    return (f"{label} p50 / p95", value, f"{p50 / percentile(baseline, 50):.2f}x {against}")


async def deltas(store: Store, record: CollectionRecord) -> int:
    async with store.database.reading() as conn:
        row = await (await conn.execute(COUNT_DELTAS, {"collection": record.name})).fetchone()
    return int(row[0]) if row else 0


def embed(
    embedder: Embedder, documents: list[str], queries: list[str], cache: Path | None
) -> tuple[np.ndarray, np.ndarray]:
    """The documents' and queries' vectors (from `cache` if an earlier run saved them)."""
    if cache is not None and cache.exists():
        saved = np.load(cache)
        if len(saved["docs"]) == len(documents) and len(saved["queries"]) >= len(queries):
            return saved["docs"], saved["queries"][: len(queries)]
    docs, vectors = embedder.embed(documents).vectors, embedder.embed(queries).vectors
    if cache is not None:
        np.savez(cache, docs=docs, queries=vectors)
    return docs, vectors


async def run(args: argparse.Namespace) -> None:
    begun = time.perf_counter()
    data = beir.load(args.dataset)
    work = Path(tempfile.mkdtemp(prefix="embedsearch-lexical-"))
    try:
        embedder = build_embedder(Settings(data_dir=work / "data"))  # the default backend
        print(f"chunking and embedding {len(data.doc_texts)} documents ...", flush=True)
        real = [c for text in data.doc_texts for c in split(text, embedder, ChunkingOptions())]
        texts = compose(real, data.doc_texts, args.rows)
        print(f"chunked: {time.perf_counter() - begun:.0f} s", flush=True)
        query_texts = data.query_texts[: args.queries]
        docs, query_vectors = embed(embedder, data.doc_texts, query_texts, args.vector_cache)
        vectors = spread(docs, args.rows)
        words = np.median([len(t.split()) for t in texts])
        print(
            f"{len(real)} real chunks, {args.rows} in all (median {words:.0f} words);"
            f" {time.perf_counter() - begun:.0f} s so far",
            flush=True,
        )
        server = EmbeddedPostgres(work / "pgdata")
        store = Store(server.url)
        await store.open()
        try:
            await measure_all(store, embedder, texts, vectors, query_texts, query_vectors, args)
        finally:
            await store.close()
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n(whole run: {time.perf_counter() - begun:.0f} s)")


async def measure_all(
    store: Store,
    embedder: Embedder,
    texts: list[str],
    vectors: np.ndarray,
    query_texts: list[str],
    query_vectors: np.ndarray,
    args: argparse.Namespace,
) -> None:
    write_rows = min(args.write_rows or args.rows, args.rows)
    start = time.perf_counter()
    record, with_stats, without, rest = await load(store, texts, vectors, write_rows)
    print(f"loaded in {time.perf_counter() - start:.0f} s", flush=True)
    model = model_rate(embedder, texts)
    # Seconds per chunk add up: the model's, then the write's.
    full_without, full_with = 1 / (1 / model + 1 / without), 1 / (1 / model + 1 / with_stats)
    writes = [
        (f"upsert, BM25 triggers disabled, {write_rows} rows", f"{without:.0f} rows/s", "baseline"),
        (
            f"upsert with BM25 statistics, {write_rows} rows",
            f"{with_stats:.0f} rows/s",
            f"{with_stats / without:.3f}x without",
        ),
        (f"model alone, {MODEL_SAMPLE} of the same texts", f"{model:.1f} chunks/s", ""),
        ("model + write, triggers disabled", f"{full_without:.1f} chunks/s", "baseline"),
        (
            "model + write, with BM25 statistics",
            f"{full_with:.1f} chunks/s",
            f"{full_with / full_without:.3f}x without",
        ),
    ]
    if rest:
        writes.insert(
            2, (f"upsert with statistics, rows {write_rows}-{len(texts)}", f"{rest:.0f} rows/s", "")
        )

    start = time.perf_counter()
    await store.indexes.build(
        record, IndexSpec(), rows=len(texts), probes=None, memory_cap_bytes=2 << 30
    )
    fresh = await store.registry.get(record.name)
    assert fresh is not None
    record = fresh
    print(f"HNSW built in {time.perf_counter() - start:.0f} s", flush=True)
    handle = store.collection(record)
    distance = record.layout.index_distance
    fusion = Fusion()
    n = len(query_texts)
    depth = HYBRID_CANDIDATES

    full_sum = Bm25(handle)  # the previous release's statement: every posting summed
    full_sum.pruning = Pruning(enabled=False)

    async def lexical(q: int) -> object:
        return await handle.bm25.search(query_texts[q], limit=LIMIT)

    async def summed(q: int) -> object:
        return await full_sum.search(query_texts[q], limit=LIMIT)

    async def old_lexical(q: int) -> object:
        return await ts_rank(store, record, query_texts[q], LIMIT)

    async def dense(q: int) -> object:
        return await handle.search(query_vectors[q], limit=LIMIT, distance=distance)

    async def hybrid(q: int) -> object:
        # Both legs at once, as core/search.py runs them.
        dense_hits, lexical_hits = await asyncio.gather(
            handle.search(query_vectors[q], limit=HYBRID_CANDIDATES, distance=distance),
            handle.bm25.search(query_texts[q], limit=HYBRID_CANDIDATES),
        )
        return fuse(dense_hits, lexical_hits, fusion, limit=LIMIT)

    pruned_deep = Bm25(handle)  # pruning at the hybrid leg's depth too (Bm25 does not)
    pruned_deep.pruning = Pruning(max_depth=HYBRID_CANDIDATES)

    async def lexical_deep(q: int) -> object:  # the lexical leg of a hybrid search alone
        return await handle.bm25.search(query_texts[q], limit=HYBRID_CANDIDATES)

    async def summed_deep(q: int) -> object:
        return await full_sum.search(query_texts[q], limit=HYBRID_CANDIDATES)

    async def forced_deep(q: int) -> object:
        return await pruned_deep.search(query_texts[q], limit=HYBRID_CANDIDATES)

    async def old_hybrid(q: int) -> object:
        dense_hits = await handle.search(
            query_vectors[q], limit=HYBRID_CANDIDATES, distance=distance
        )
        lexical_hits = await ts_rank(store, record, query_texts[q], HYBRID_CANDIDATES)
        return fuse(dense_hits, lexical_hits, fusion, limit=LIMIT)

    async def statistics(q: int) -> object:  # the read that deltas slow down
        params = {"collection": record.name, "config": record.text_config, "text": query_texts[q]}
        async with store.database.reading() as conn:
            return await (await conn.execute(QUERY_STATISTICS, params)).fetchall()

    pending = await deltas(store, record)
    before = await measure({"lexical": lexical, "old": old_lexical, "stats": statistics}, n)
    start = time.perf_counter()
    await handle.bm25.compact()
    compact_seconds = time.perf_counter() - start
    variants: dict[str, Variant] = {
        "lexical": lexical,
        "summed": summed,
        "old": old_lexical,
        "dense": dense,
        "hybrid": hybrid,
        "old_hybrid": old_hybrid,
        "stats": statistics,
        "deep": lexical_deep,
        "summed_deep": summed_deep,
        "forced_deep": forced_deep,
    }
    after = await measure(variants, n)
    print(
        f"\n{len(texts)} chunks, {n} SciFact queries, limit {LIMIT}"
        f" (hybrid: {depth} per list, {fusion.method.value} fusion, as core/search.py):"
    )
    report(
        [
            latency("lexical, old ts_rank (baseline)", after["old"], None, ""),
            latency("lexical BM25, every posting summed", after["summed"], after["old"], "ts_rank"),
            latency(
                "lexical BM25, pruned (Bm25.search)", after["lexical"], after["summed"], "summed"
            ),
            latency(f"lexical BM25@{depth}, every posting summed", after["summed_deep"], None, ""),
            latency(
                f"lexical BM25@{depth} (Bm25.search)", after["deep"], after["summed_deep"], "summed"
            ),
            latency(
                f"lexical BM25@{depth}, pruned",
                after["forced_deep"],
                after["summed_deep"],
                "summed",
            ),
            latency("dense HNSW (CollectionHandle.search)", after["dense"], None, ""),
            latency(
                f"hybrid: dense@{depth} + BM25@{depth} + fuse",
                after["hybrid"],
                after["dense"],
                "dense alone",
            ),
            latency(
                f"hybrid with ts_rank@{depth} instead",
                after["old_hybrid"],
                after["dense"],
                "dense alone",
            ),
        ]
    )
    print(f"\ncompaction after the load ({pending} delta rows left by it):")
    report(
        [
            ("Bm25.compact()", f"{compact_seconds * 1000:.0f} ms", ""),
            latency("BM25 statistics read, before", before["stats"], None, ""),
            latency("BM25 statistics read, after", after["stats"], before["stats"], "before"),
            latency("lexical BM25, before", before["lexical"], before["old"], "ts_rank, same pass"),
            latency("lexical BM25, after", after["lexical"], after["old"], "ts_rank, same pass"),
        ]
    )
    print(f"\nwrites (upsert batches of {WRITE_BATCH}, no ANN index during the load):")
    report(writes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, default=beir.DEFAULT_DATASET)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument(
        "--write-rows", type=int, default=0, help="rows written to both collections (0: --rows)"
    )
    parser.add_argument(
        "--vector-cache",
        type=Path,
        help="an .npz file keeping the documents' and queries' vectors between runs",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

"""Run a BEIR dataset against a collection: ingest the corpus (a no-op when unchanged), search
every query in each mode, score the rankings, and time the searches."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from embedsearch.core import collections
from embedsearch.core.chunking import ChunkingOptions
from embedsearch.core.constants import MAX_LIMIT
from embedsearch.core.deps import Deps
from embedsearch.core.search import search
from embedsearch.core.search_mode import SearchMode
from embedsearch.core.validation import check_collection_name
from embedsearch.evaluation import metrics
from embedsearch.evaluation.dataset import BeirDataset, DatasetError, default_collection
from embedsearch.evaluation.metrics import DEPTH, Latency
from embedsearch.evaluation.ranking import documents
from embedsearch.ingest.pipeline import ProgressCallback, Summary, ingest

TIMED_LIMIT = 10  # latency and ANN recall are measured on what a RAG application asks for
# First try for DEPTH distinct documents: documents run to about two chunks each in SciFact;
# a query whose best chunks crowd into fewer documents asks again with a doubled limit.
_FIRST_LIMIT = min(MAX_LIMIT, 3 * DEPTH)
T = TypeVar("T")


@dataclass(frozen=True)
class EvalOptions:
    modes: tuple[SearchMode, ...] = tuple(SearchMode)
    collection: str | None = None  # None: eval_<dataset folder>
    chunking: ChunkingOptions = field(default_factory=ChunkingOptions)


@dataclass(frozen=True)
class ModeResult:
    mode: SearchMode
    scores: dict[str, float]  # metrics.MEASURES, mean over the queries
    per_query: dict[str, dict[str, float]]
    rankings: dict[str, list[str]]  # query id -> up to DEPTH document ids, best first
    latency: Latency  # search_any(limit=TIMED_LIMIT), query embedding included
    empty: int  # queries that retrieved nothing (they score 0)


@dataclass(frozen=True)
class EvalResult:
    dataset: str
    split: str
    collection: str
    model: str
    backend: str | None  # the local model's runtime (torch, onnx, onnx-int8), if local
    documents: int
    chunks: int
    queries: int
    ingest: Summary
    modes: list[ModeResult]
    ann_recall_at_10: float | None  # dense top-10 through HNSW vs exact search (chunk ids)
    exact_latency: Latency | None  # the exact (full scan) dense searches behind that figure
    embedding_latency: Latency | None  # embedding one query, on its own
    seconds: float


QueryCallback = Callable[[SearchMode], None]  # called after each query of a mode


async def evaluate(
    deps: Deps,
    dataset: BeirDataset,
    options: EvalOptions | None = None,
    *,
    on_ingest: ProgressCallback | None = None,
    on_query: QueryCallback | None = None,
) -> EvalResult:
    options = options or EvalOptions()
    started = time.perf_counter()
    name = check_collection_name(options.collection or default_collection(dataset.root))
    await collections.ensure(deps, name)
    summary = await ingest(
        deps,
        [dataset.corpus],
        collection=name,
        options=options.chunking,
        on_progress=on_ingest,
        expected_documents=dataset.documents,
    )
    if summary.failed:  # dataset.py read every line; what fails here is an invalid document
        first = summary.failed[0]
        raise DatasetError(
            f"{len(summary.failed)} corpus documents could not be stored "
            f"(first: {first.source}: {first.reason})"
        )
    target = await collections.resolve(deps, name)
    record, chunks = target.record, await target.chunks.count()
    worker = await target.worker()  # loaded by the ingest already

    results, top_chunks = [], {}
    for mode in options.modes:
        result, top = await _run_mode(deps, dataset, name, mode, on_query)
        results.append(result)
        top_chunks[mode] = top
    ann, exact_latency = None, None
    if SearchMode.DENSE in top_chunks:
        ann, exact_latency = await _ann_recall(deps, dataset, name, top_chunks[SearchMode.DENSE])
    embedding = None
    if any(mode is not SearchMode.LEXICAL for mode in options.modes):
        timed = [await _timed(worker.embed_async([q])) for q in dataset.queries.values()]
        embedding = Latency.of([seconds for _, seconds in timed])
    return EvalResult(
        dataset=dataset.name,
        split=dataset.split,
        collection=name,
        model=record.model,
        backend=getattr(worker.embedder, "backend", None),  # only local embedders have one
        documents=dataset.documents,
        chunks=chunks,
        queries=len(dataset.queries),
        ingest=summary,
        modes=results,
        ann_recall_at_10=ann,
        exact_latency=exact_latency,
        embedding_latency=embedding,
        seconds=time.perf_counter() - started,
    )


async def _run_mode(
    deps: Deps,
    dataset: BeirDataset,
    collection: str,
    mode: SearchMode,
    on_query: QueryCallback | None,
) -> tuple[ModeResult, dict[str, list[str]]]:
    rankings: dict[str, list[str]] = {}
    top: dict[str, list[str]] = {}
    seconds: list[float] = []
    for query_id, text in dataset.queries.items():
        rankings[query_id] = await _ranked(deps, text, mode, collection)
        outcome, elapsed = await _timed(
            search(deps, text, mode=mode, limit=TIMED_LIMIT, collection=collection)
        )
        seconds.append(elapsed)
        top[query_id] = [hit.chunk_id for hit in outcome.hits]
        if on_query is not None:
            on_query(mode)
    per_query = metrics.per_query(dataset.qrels, rankings)
    empty = sum(1 for ranked in rankings.values() if not ranked)
    result = ModeResult(
        mode, metrics.means(per_query), per_query, rankings, Latency.of(seconds), empty
    )
    return result, top


async def _ranked(deps: Deps, query: str, mode: SearchMode, collection: str) -> list[str]:
    """The top DEPTH distinct documents (fewer if the collection or the matches run out)."""
    limit = _FIRST_LIMIT
    while True:
        outcome = await search(deps, query, mode=mode, limit=limit, collection=collection)
        ranked = documents(outcome.hits)
        if len(ranked) >= DEPTH or len(outcome.hits) < limit or limit == MAX_LIMIT:
            return ranked[:DEPTH]
        limit = min(MAX_LIMIT, 2 * limit)


async def _ann_recall(
    deps: Deps,
    dataset: BeirDataset,
    collection: str,
    approximate: dict[str, list[str]],
) -> tuple[float, Latency]:
    """Mean share of the exact top-10 chunks that the HNSW search found."""
    overlaps, seconds = [], []
    for query_id, text in dataset.queries.items():
        outcome, elapsed = await _timed(
            search(
                deps,
                text,
                mode=SearchMode.DENSE,
                limit=TIMED_LIMIT,
                collection=collection,
                exact=True,
            )
        )
        seconds.append(elapsed)
        exact = [hit.chunk_id for hit in outcome.hits]
        overlaps.append(metrics.overlap(approximate[query_id], exact))
    return sum(overlaps) / len(overlaps), Latency.of(seconds)


async def _timed(work: Awaitable[T]) -> tuple[T, float]:
    """The result and the wall time in seconds: what a caller in this process waits."""
    start = time.perf_counter()
    result = await work
    return result, time.perf_counter() - start

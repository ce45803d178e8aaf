"""Run a BEIR dataset against a collection: ingest the corpus (a no-op when unchanged), search
every query in each mode, score the rankings, and time the searches. `sweep` scores hybrid
search's fusion settings on the same judgments and names the best for the collection."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from embedsearch.core import collections
from embedsearch.core.chunking import ChunkingOptions
from embedsearch.core.constants import (
    DEFAULT_CONVEX_ALPHA,
    DEFAULT_RRF_K,
    MAX_LIMIT,
)
from embedsearch.core.deps import Deps
from embedsearch.core.errors import InvalidInput
from embedsearch.core.fusion import Fusion, FusionMethod, fuse
from embedsearch.core.search import hybrid_depth, search
from embedsearch.core.search_mode import SearchMode
from embedsearch.core.validation import check_collection_name
from embedsearch.evaluation import metrics
from embedsearch.evaluation.dataset import BeirDataset, DatasetError, default_collection
from embedsearch.evaluation.metrics import DEPTH, NDCG_AT_10, Latency
from embedsearch.evaluation.ranking import documents
from embedsearch.ingest.pipeline import ProgressCallback, Summary, ingest

TIMED_LIMIT = 10  # latency and ANN recall are measured on what a RAG application asks for
# First try for DEPTH distinct documents: documents run to about two chunks each in SciFact;
# a query whose best chunks crowd into fewer documents asks again with a doubled limit.
_FIRST_LIMIT = min(MAX_LIMIT, 3 * DEPTH)
# The dense and lexical lists behind _ranked's hybrid searches: every limit _ranked asks for
# (_FIRST_LIMIT and up) already reaches hybrid_depth's cap. A sweep fuses lists this long.
SWEEP_DEPTH = hybrid_depth(_FIRST_LIMIT)
SWEEP_ALPHAS = tuple(round(tenth / 10, 1) for tenth in range(11))  # 0.0, 0.1, ..., 1.0
SWEEP_RRF_KS = (DEFAULT_RRF_K,)
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


@dataclass(frozen=True)
class SweepRow:
    """One setting of a sweep: a fusion, or one of the two lists alone (fusion None)."""

    label: str  # "convex alpha 0.6", "rrf k 60", "dense only", "lexical only"
    fusion: Fusion | None
    scores: dict[str, float]  # metrics.MEASURES, mean over the queries
    per_query: dict[str, dict[str, float]]
    rankings: dict[str, list[str]]  # query id -> up to DEPTH document ids, best first
    empty: int  # queries that retrieved nothing (they score 0)
    note: str = ""  # e.g. what convex alpha 1.0 amounts to


@dataclass(frozen=True)
class SweepResult:
    dataset: str
    split: str
    collection: str
    queries: int
    depth: int  # chunks in each of the dense and lexical lists
    current: Fusion | None  # the collection's stored default when the sweep ran
    rows: list[SweepRow]  # dense only, lexical only, then the fusions in the order asked
    seconds: float

    @property
    def fusions(self) -> list[SweepRow]:
        return [row for row in self.rows if row.fusion is not None]

    @property
    def best(self) -> SweepRow:
        """The fusion with the highest mean nDCG@10; ties go to the convex alpha closest to
        0.5 (then the larger alpha), then to rrf (the k closest to the default)."""
        return min(self.fusions, key=_preference)

    @property
    def tied(self) -> list[SweepRow]:
        """The fusions with the best one's nDCG@10 (the best among them)."""
        top = _preference(self.best)[0]
        return [row for row in self.fusions if _preference(row)[0] == top]


DENSE_ONLY = "dense only"
LEXICAL_ONLY = "lexical only"
SweepCallback = Callable[[], None]  # called after each query


def fusion_label(fusion: Fusion) -> str:
    """convex alpha 0.6, rrf k 60."""
    if fusion.method is FusionMethod.RRF:
        return f"rrf k {fusion.k}"
    return f"convex alpha {fusion.alpha}"


async def sweep(
    deps: Deps,
    dataset: BeirDataset,
    collection: str,
    *,
    alphas: Sequence[float] = SWEEP_ALPHAS,
    rrf_ks: Sequence[int] = SWEEP_RRF_KS,
    on_query: SweepCallback | None = None,
) -> SweepResult:
    """Score hybrid search's fusions on the dataset's judgments against an ingested
    collection (404 if missing; `evaluate` ingests). Each query is embedded once and its dense
    and lexical lists are fetched once, as a hybrid search of this evaluation fetches them;
    every setting fuses those same lists (core.fusion.fuse), so the rows differ only by the
    fusion. The rankings and measures are the evaluation's: the top DEPTH distinct documents,
    trec_eval."""
    started = time.perf_counter()
    settings = list(
        dict.fromkeys(
            [Fusion(FusionMethod.CONVEX, alpha=float(alpha)) for alpha in alphas]
            + [Fusion(FusionMethod.RRF, k=int(k)) for k in rrf_ks]
        )
    )
    if not settings:
        raise InvalidInput("a sweep needs at least one alpha or rrf k", field="alphas")
    for setting in settings:
        setting.check()
    target = await collections.resolve(deps, check_collection_name(collection))
    record = target.record
    labels = [DENSE_ONLY, LEXICAL_ONLY, *(fusion_label(s) for s in settings)]
    rankings: dict[str, dict[str, list[str]]] = {label: {} for label in labels}
    for query_id, text in dataset.queries.items():
        # What search() does for mode hybrid (no filter): one embedding, two lists.
        vector = (await target.embed([text])).vectors[0]
        dense = await target.chunks.search(
            vector, limit=SWEEP_DEPTH, distance=record.layout.index_distance
        )
        lexical = await target.chunks.bm25.search(text, limit=SWEEP_DEPTH)
        rankings[DENSE_ONLY][query_id] = documents(dense)[:DEPTH]
        rankings[LEXICAL_ONLY][query_id] = documents(lexical)[:DEPTH]
        for setting, label in zip(settings, labels[2:], strict=True):
            # The top DEPTH documents of the top MAX_LIMIT fused chunks: where _ranked's
            # growing limits end up (the fused order does not depend on the limit).
            fused = fuse(dense, lexical, setting, limit=MAX_LIMIT)
            rankings[label][query_id] = documents(fused)[:DEPTH]
        if on_query is not None:
            on_query()
    current = Fusion.from_dict(record.fusion) if record.fusion else None
    rows = []
    for label, fusion in zip(labels, [None, None, *settings], strict=True):
        ranked = rankings[label]
        per_query = metrics.per_query(dataset.qrels, ranked)
        rows.append(
            SweepRow(
                label,
                fusion,
                metrics.means(per_query),
                per_query,
                ranked,
                sum(1 for documents_ in ranked.values() if not documents_),
                _note(fusion, current),
            )
        )
    return SweepResult(
        dataset=dataset.name,
        split=dataset.split,
        collection=record.name,
        queries=len(dataset.queries),
        depth=SWEEP_DEPTH,
        current=current,
        rows=rows,
        seconds=time.perf_counter() - started,
    )


def _note(fusion: Fusion | None, current: Fusion | None) -> str:
    if fusion is None:
        return ""
    notes = []
    if fusion == current:
        notes.append("the collection's default")
    if fusion.method is FusionMethod.CONVEX:
        if fusion.alpha == 1.0:
            notes.append("dense scores only")
        elif fusion.alpha == 0.0:
            notes.append("lexical scores only")
        elif fusion.alpha == DEFAULT_CONVEX_ALPHA and current is None:
            notes.append("built-in default")
    return ", ".join(notes)


def _preference(row: SweepRow) -> tuple[float, int, float, float]:
    assert row.fusion is not None
    fusion = row.fusion
    # Means of identical per-query figures are identical; rounding absorbs the last bits of
    # sums taken over different settings.
    ndcg = -round(row.scores[NDCG_AT_10], 12)
    if fusion.method is FusionMethod.CONVEX:
        return (ndcg, 0, round(abs(fusion.alpha - 0.5), 9), -fusion.alpha)
    return (ndcg, 1, abs(fusion.k - DEFAULT_RRF_K), fusion.k)

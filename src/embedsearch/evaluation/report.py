"""An evaluation as JSON (for CI), markdown (for docs and PR comments) and a rich table."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from embedsearch.core.evaluation import TIMED_LIMIT, EvalResult, ModeResult
from embedsearch.evaluation.metrics import MEASURES, MRR_AT_10, NDCG_AT_10, RECALL_AT_100, Latency

LATENCY_NOTE = (
    f"Latency: SearchService.search_any(limit={TIMED_LIMIT}) timed in process around the call, "
    "one query at a time, query embedding included (dense and hybrid embed the query; lexical "
    "does not). No HTTP."
)
QUALITY_NOTE = (
    "Quality: the top 100 distinct documents per query (a document ranks at its best chunk), "
    "scored with trec_eval through pytrec_eval; a query that retrieves nothing scores 0."
)
_HEADERS = ("mode", "nDCG@10", "Recall@100", "MRR@10", "p50 ms", "p95 ms", "no results")


def to_dict(result: EvalResult) -> dict[str, Any]:
    return {
        "dataset": result.dataset,
        "split": result.split,
        "collection": result.collection,
        "model": result.model,
        "backend": result.backend,
        "documents": result.documents,
        "chunks": result.chunks,
        "queries": result.queries,
        "modes": {m.mode.value: _mode(m) for m in result.modes},
        "ann_recall@10": _round(result.ann_recall_at_10),
        "exact_search_latency_ms": _latency(result.exact_latency),
        "query_embedding_latency_ms": _latency(result.embedding_latency),
        "ingest": {
            "new": result.ingest.new,
            "updated": result.ingest.updated,
            "unchanged": result.ingest.unchanged,
            "chunks_embedded": result.ingest.chunks_embedded,
            "seconds": round(result.ingest.seconds, 2),
        },
        "seconds": round(result.seconds, 2),
        "notes": [LATENCY_NOTE, QUALITY_NOTE],
    }


def to_json(result: EvalResult) -> str:
    return json.dumps(to_dict(result), indent=2) + "\n"


def to_markdown(result: EvalResult) -> str:
    lines = [
        f"## Retrieval evaluation: {result.dataset} ({result.split} split)",
        "",
        _summary(result),
        "",
        "| " + " | ".join(_HEADERS) + " |",
        "| --- |" + " ---: |" * (len(_HEADERS) - 1),
        *("| " + " | ".join(_row(m)) + " |" for m in result.modes),
        "",
        *(f"- {note}" for note in _notes(result)),
    ]
    return "\n".join(lines) + "\n"


def print_table(result: EvalResult, console: Console) -> None:
    table = Table(title=_summary(result).replace("`", ""), title_justify="left")
    for index, header in enumerate(_HEADERS):
        table.add_column(header, justify="left" if index == 0 else "right")
    for mode in result.modes:
        table.add_row(*_row(mode))
    console.print(table)
    for note in _notes(result):
        console.print(f"- {note}", markup=False, highlight=False)


def _summary(result: EvalResult) -> str:
    model = f"{result.model} ({result.backend})" if result.backend else result.model
    return (
        f"{result.dataset}: {result.queries:,} queries over {result.documents:,} documents "
        f"({result.chunks:,} chunks) in collection `{result.collection}`, model {model}"
    )


def _row(mode: ModeResult) -> list[str]:
    scores = [f"{mode.scores[m]:.4f}" for m in (NDCG_AT_10, RECALL_AT_100, MRR_AT_10)]
    latency = [f"{mode.latency.p50_ms:.1f}", f"{mode.latency.p95_ms:.1f}"]
    return [mode.mode.value, *scores, *latency, str(mode.empty)]


def _notes(result: EvalResult) -> list[str]:
    notes = []
    if result.ann_recall_at_10 is not None:
        exact = result.exact_latency
        timing = (
            f"; exact search p50 {exact.p50_ms:.1f} ms, p95 {exact.p95_ms:.1f} ms" if exact else ""
        )
        notes.append(
            f"ANN (HNSW) recall@10 against exact search: {result.ann_recall_at_10:.4f} "
            f"(dense top-10 chunk ids{timing})"
        )
    if result.embedding_latency is not None:
        embed = result.embedding_latency
        notes.append(
            f"Query embedding alone: p50 {embed.p50_ms:.1f} ms, p95 {embed.p95_ms:.1f} ms "
            "(subtract it for the search without embedding)"
        )
    notes += [LATENCY_NOTE, QUALITY_NOTE]
    ingest = result.ingest
    notes.append(
        f"Ingest: {ingest.chunks_embedded:,} chunks embedded ({ingest.new:,} new, "
        f"{ingest.updated:,} updated, {ingest.unchanged:,} unchanged documents) in "
        f"{ingest.seconds:.1f} s; the whole evaluation took {result.seconds:.1f} s."
    )
    return notes


def _mode(mode: ModeResult) -> dict[str, Any]:
    return {
        **{m: _round(mode.scores[m]) for m in MEASURES},
        "latency_ms": _latency(mode.latency),
        "queries_without_results": mode.empty,
        "per_query": {
            query: {m: _round(scores[m]) for m in MEASURES}
            for query, scores in mode.per_query.items()
        },
    }


def _latency(latency: Latency | None) -> dict[str, float] | None:
    if latency is None:
        return None
    return {"p50": round(latency.p50_ms, 2), "p95": round(latency.p95_ms, 2)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)

"""An evaluation (and a fusion sweep) as JSON (for CI), markdown (for docs and PR comments) and
rich tables."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from embedsearch.core.evaluation import (
    LEXICAL_ONLY,
    TIMED_LIMIT,
    EvalResult,
    ModeResult,
    SweepResult,
    SweepRow,
    fusion_label,
)
from embedsearch.evaluation.metrics import MEASURES, MRR_AT_10, NDCG_AT_10, RECALL_AT_100, Latency

LATENCY_NOTE = (
    f"Latency: core.search.search(limit={TIMED_LIMIT}) timed in process around the call, "
    "one query at a time, query embedding included (dense and hybrid embed the query; lexical "
    "does not). No HTTP."
)
QUALITY_NOTE = (
    "Quality: the top 100 distinct documents per query (a document ranks at its best chunk), "
    "scored with trec_eval through pytrec_eval; a query that retrieves nothing scores 0."
)
_HEADERS = ("mode", "nDCG@10", "Recall@100", "MRR@10", "p50 ms", "p95 ms", "no results")
_SWEEP_HEADERS = ("setting", "nDCG@10", "Recall@100", "MRR@10", "no results", "note")


def to_dict(result: EvalResult, sweep: SweepResult | None = None) -> dict[str, Any]:
    found = {
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
    if sweep is not None:
        found["sweep"] = sweep_to_dict(sweep)
    return found


def to_json(result: EvalResult, sweep: SweepResult | None = None) -> str:
    return json.dumps(to_dict(result, sweep), indent=2) + "\n"


def to_markdown(result: EvalResult, sweep: SweepResult | None = None) -> str:
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
    if sweep is not None:
        lines += ["", *sweep_markdown(sweep)]
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


# The fusion sweep (core.evaluation.sweep).


def best_line(sweep: SweepResult) -> str:
    """best for eval_scifact: convex alpha 0.6 (nDCG@10 0.7312)"""
    best = sweep.best
    return f"best for {sweep.collection}: {best.label} (nDCG@10 {best.scores[NDCG_AT_10]:.4f})"


def sweep_to_dict(sweep: SweepResult) -> dict[str, Any]:
    best = sweep.best
    return {
        "collection": sweep.collection,
        "queries": sweep.queries,
        "candidates": sweep.depth,
        "current_fusion": sweep.current.as_dict() if sweep.current else None,
        "best": {
            "setting": best.label,
            "fusion": best.fusion.as_dict() if best.fusion else None,
            **{m: _round(best.scores[m]) for m in MEASURES},
            "tied_with": [row.label for row in sweep.tied if row is not best],
        },
        "settings": [
            {
                "setting": row.label,
                "fusion": row.fusion.as_dict() if row.fusion else None,
                **{m: _round(row.scores[m]) for m in MEASURES},
                "queries_without_results": row.empty,
                "per_query": {
                    query: {m: _round(scores[m]) for m in MEASURES}
                    for query, scores in row.per_query.items()
                },
            }
            for row in sweep.rows
        ],
        "seconds": round(sweep.seconds, 2),
        "notes": _sweep_notes(sweep),
    }


def sweep_markdown(sweep: SweepResult) -> list[str]:
    best = sweep.best
    rows = [_sweep_row(row) for row in sweep.rows]
    for cells, row in zip(rows, sweep.rows, strict=True):
        if row is best:
            cells[0] = f"**{cells[0]}**"
    return [
        f"### Hybrid fusion sweep: collection `{sweep.collection}`",
        "",
        "| " + " | ".join(_SWEEP_HEADERS) + " |",
        "| --- |" + " ---: |" * (len(_SWEEP_HEADERS) - 2) + " --- |",
        *("| " + " | ".join(cells) + " |" for cells in rows),
        "",
        f"**{best_line(sweep)}**",
        "",
        *(f"- {note}" for note in _sweep_notes(sweep)),
    ]


def print_sweep(sweep: SweepResult, console: Console) -> None:
    title = (
        f"Hybrid fusion sweep: {sweep.queries:,} queries in collection {sweep.collection}, "
        f"up to {sweep.depth:,} dense and {sweep.depth:,} lexical candidates per query"
    )
    table = Table(title=title, title_justify="left")
    for index, header in enumerate(_SWEEP_HEADERS):
        table.add_column(header, justify="right" if 0 < index < len(_SWEEP_HEADERS) - 1 else "left")
    best = sweep.best
    for row in sweep.rows:
        cells = _sweep_row(row)
        if row is best:
            cells[-1] = "best" + (f"; {row.note}" if row.note else "")
        table.add_row(*cells, style="bold green" if row is best else None)
        if row.label == LEXICAL_ONLY:  # the two lists alone, then the fusions
            table.add_section()
    console.print(table)
    for note in _sweep_notes(sweep):
        console.print(f"- {note}", markup=False, highlight=False)
    console.print(best_line(sweep), markup=False, highlight=False)


def _sweep_row(row: SweepRow) -> list[str]:
    scores = [f"{row.scores[m]:.4f}" for m in (NDCG_AT_10, RECALL_AT_100, MRR_AT_10)]
    return [row.label, *scores, str(row.empty), row.note]


def _sweep_notes(sweep: SweepResult) -> list[str]:
    current = fusion_label(sweep.current) if sweep.current else "none (the built-in one)"
    tied = len(sweep.tied)
    ties = (
        [
            f"{tied} of the {len(sweep.fusions)} fusions tie at the best nDCG@10 "
            f"({sweep.best.scores[NDCG_AT_10]:.4f}): these judgments do not tell them apart."
        ]
        if tied > 1
        else []
    )
    return [
        f"Sweep: each query embedded once; its dense and lexical lists (up to {sweep.depth:,} "
        "chunks each, as this evaluation's hybrid searches fetch them) fused for every "
        "setting, then ranked and scored as above. Best: the highest nDCG@10; ties go to the "
        "convex alpha closest to 0.5, then to rrf.",
        "dense only / lexical only: those same lists alone. Convex alpha 1.0 and 0.0 rank "
        "like them, except that chunks found only by the other list follow at score 0 (by "
        "chunk id).",
        *ties,
        f"The collection's stored default fusion when the sweep ran: {current}.",
    ]

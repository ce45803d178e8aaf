"""Ranking quality with trec_eval (through pytrec_eval), ANN recall, latency percentiles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pytrec_eval

NDCG_AT_10 = "ndcg@10"
RECALL_AT_100 = "recall@100"
MRR_AT_10 = "mrr@10"
MEASURES = (NDCG_AT_10, RECALL_AT_100, MRR_AT_10)
DEPTH = 100  # documents per query that the measures need (Recall@100)
_MRR_CUTOFF = 10

Qrels = Mapping[str, Mapping[str, int]]
Rankings = Mapping[str, Sequence[str]]  # query id -> document ids, best first


def per_query(qrels: Qrels, rankings: Rankings) -> dict[str, dict[str, float]]:
    """Each measure for each ranked query. A query that retrieved nothing scores 0: trec_eval
    would leave it out, which flatters modes that often return nothing (lexical)."""
    judged = {q: dict(qrels[q]) for q in rankings}
    deep = _evaluate(judged, {"ndcg_cut.10", "recall.100"}, _run(rankings, DEPTH))
    # trec_eval's recip_rank has no cutoff: MRR@10 is recip_rank over the top 10 only.
    top = _evaluate(judged, {"recip_rank"}, _run(rankings, _MRR_CUTOFF))
    scores = {}
    for query in rankings:
        found, first = deep.get(query, {}), top.get(query, {})
        scores[query] = {
            NDCG_AT_10: float(found.get("ndcg_cut_10", 0.0)),
            RECALL_AT_100: float(found.get("recall_100", 0.0)),
            MRR_AT_10: float(first.get("recip_rank", 0.0)),
        }
    return scores


def means(scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    return {m: float(np.mean([s[m] for s in scores.values()])) if scores else 0.0 for m in MEASURES}


def _evaluate(
    qrels: dict[str, dict[str, int]], measures: set[str], run: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    result: dict[str, dict[str, float]] = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(
        run
    )
    return result


def _run(rankings: Rankings, depth: int) -> dict[str, dict[str, float]]:
    # trec_eval sorts by score and breaks ties by document id: strictly falling scores keep
    # our order exactly.
    return {
        query: {doc: float(depth - rank) for rank, doc in enumerate(ranked[:depth])}
        for query, ranked in rankings.items()
    }


def overlap(approximate: Sequence[str], exact: Sequence[str]) -> float:
    """Recall of an approximate top-k against the exact top-k (1.0 when both are empty)."""
    truth = set(exact)
    return len(truth & set(approximate)) / len(truth) if truth else 1.0


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float
    samples: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        if not seconds:
            return cls(0.0, 0.0, 0)
        p50, p95 = np.percentile(np.asarray(seconds) * 1000.0, [50, 95])
        return cls(float(p50), float(p95), len(seconds))

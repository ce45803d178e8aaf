"""How a migration's new rankings compare with the old: top-10 overlap on sample queries, and
nDCG@10 of both when BEIR-style judgments are given."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from embedsearch.core.errors import InvalidInput
from embedsearch.core.search import search
from embedsearch.evaluation import metrics
from embedsearch.evaluation.ranking import documents

if TYPE_CHECKING:
    from embedsearch.core.deps import Deps
    from embedsearch.store.model_migrations import MigrationRecord

TOP_K = 10
SAMPLED_QUERIES = 50
_QUERY_WORDS = 12  # a sampled chunk's first words make its query
_MAX_JUDGED_QUERIES = 2_000


def parse_judgments(value: Any) -> dict[str, Any]:
    """`{"queries": {id: text}, "qrels": {id: {documentId: relevance}}}` (as a BEIR folder
    holds them), checked; only the judged queries are kept."""
    field = "judgments"
    if not isinstance(value, dict):
        raise InvalidInput("judgments must be an object with queries and qrels", field=field)
    queries, qrels = value.get("queries"), value.get("qrels")
    if not isinstance(queries, dict) or not isinstance(qrels, dict):
        raise InvalidInput(
            "judgments needs queries {id: text} and qrels {id: {doc: n}}", field=field
        )
    kept: dict[str, str] = {}
    judged: dict[str, dict[str, int]] = {}
    for qid, text in queries.items():
        rels = qrels.get(qid)
        if not isinstance(text, str) or not text.strip() or not isinstance(rels, dict):
            continue
        if not all(isinstance(r, int) and not isinstance(r, bool) for r in rels.values()):
            raise InvalidInput(
                f"judgments.qrels[{qid!r}]: relevances must be integers", field=field
            )
        kept[str(qid)] = text
        judged[str(qid)] = {str(doc): int(r) for doc, r in rels.items()}
    if not kept:
        raise InvalidInput("judgments: no query has both a text and judgments", field=field)
    if len(kept) > _MAX_JUDGED_QUERIES:
        raise InvalidInput(f"judgments: at most {_MAX_JUDGED_QUERIES} queries", field=field)
    return {"queries": kept, "qrels": judged}


async def compare(deps: Deps, record: MigrationRecord) -> dict[str, Any]:
    """Both collections searched (dense) with the same queries."""
    probe = record.probe or {}
    sampled = "sample" not in probe
    queries = probe.get("sample") or await _sampled_queries(deps, record)
    overlaps = []
    for query in queries:
        old = await _top(deps, record.source, query, TOP_K)
        new = await _top(deps, record.target, query, TOP_K)
        overlaps.append(metrics.overlap(new, old))
    result: dict[str, Any] = {
        "queries": len(queries),
        "sampled": sampled,
        "overlapAt10": _mean(overlaps),
        "minOverlapAt10": round(min(overlaps), 4) if overlaps else None,
    }
    judgments = probe.get("judgments")
    if judgments:
        result["ndcgAt10"] = {
            "old": await _ndcg(deps, record.source, judgments),
            "new": await _ndcg(deps, record.target, judgments),
            "queries": len(judgments["queries"]),
        }
    return result


async def _sampled_queries(deps: Deps, record: MigrationRecord) -> list[str]:
    """The first words of chunks spread over the old collection (a proxy: a chunk's own words
    find it in both models, so overlap on these reads higher than on real queries)."""
    source = await deps.store.registry.get(record.source)
    if source is None:
        return []
    texts = await deps.store.migrations.sample_texts(source.table, SAMPLED_QUERIES)
    return [q for q in (" ".join(t.split()[:_QUERY_WORDS]) for t in texts) if q]


async def _top(deps: Deps, collection: str, query: str, limit: int) -> list[str]:
    outcome = await search(deps, query, limit=limit, collection=collection, exact=True)
    return [hit.chunk_id for hit in outcome.hits]


async def _ndcg(deps: Deps, collection: str, judgments: dict[str, Any]) -> float:
    rankings = {}
    for qid, text in judgments["queries"].items():
        outcome = await search(deps, text, limit=metrics.DEPTH, collection=collection)
        rankings[qid] = documents(outcome.hits)
    scores = metrics.per_query(judgments["qrels"], rankings)
    return round(metrics.means(scores)[metrics.NDCG_AT_10], 4)


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None

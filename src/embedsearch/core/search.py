"""Search: dense (the brief's /search/pgvector), lexical or hybrid, optionally re-ranked
with Maximal Marginal Relevance."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedsearch.core.collections import resolve
from embedsearch.core.constants import (
    DEFAULT_LIMIT,
    DEFAULT_MMR_FETCH_K,
    DEFAULT_MMR_LAMBDA,
    HYBRID_CANDIDATES,
    MAX_LIMIT,
)
from embedsearch.core.deps import Deps
from embedsearch.core.distance import Distance
from embedsearch.core.errors import InvalidInput
from embedsearch.core.fusion import Fusion, fuse
from embedsearch.core.mmr import mmr as maximal_marginal_relevance
from embedsearch.core.search_mode import SearchMode
from embedsearch.core.validation import check_filter, check_limit, check_text
from embedsearch.embedders.base import normalize_rows
from embedsearch.store import SearchHit


@dataclass(frozen=True)
class SearchOutcome:
    hits: list[SearchHit]
    model: str
    distance: Distance
    query_truncated: bool
    collection: str


@dataclass(frozen=True)
class MmrOptions:
    """Maximal Marginal Relevance: pick `limit` of the top `fetch_k` results, trading relevance
    (lambda_ = 1) against novelty (lambda_ = 0)."""

    lambda_: float = DEFAULT_MMR_LAMBDA
    fetch_k: int = DEFAULT_MMR_FETCH_K

    def check(self, limit: int) -> None:
        if not 0.0 <= self.lambda_ <= 1.0:
            raise InvalidInput("mmr.lambda must be between 0 and 1", field="mmr.lambda")
        if not limit <= self.fetch_k <= MAX_LIMIT:
            raise InvalidInput(
                f"mmr.fetchK must be between limit ({limit}) and {MAX_LIMIT}", field="mmr.fetchK"
            )


def hybrid_depth(limit: int) -> int:
    """How many chunks each of hybrid's two lists holds by default."""
    return min(max(limit * 4, HYBRID_CANDIDATES), MAX_LIMIT)


async def search(
    deps: Deps,
    query: str,
    *,
    mode: SearchMode = SearchMode.DENSE,
    limit: int = DEFAULT_LIMIT,
    distance: Distance | None = None,
    collection: str | None = None,
    filter_: dict[str, Any] | None = None,
    fusion: Fusion | None = None,
    candidates: int | None = None,
    mmr: MmrOptions | None = None,
    exact: bool = False,
    ef_search: int | None = None,
    probes: int | None = None,
    require_lexemes: bool = False,
) -> SearchOutcome:
    """Dense (scores: distance, smallest first), lexical (BM25) or hybrid (a fusion of both,
    `fusion` or the collection's default; each list `candidates` long). Lexical and hybrid
    scores: larger is better. `require_lexemes`: a query of stop words or punctuation alone
    finds nothing in any mode (lexical always finds nothing for it)."""
    check_text(query, max_chars=deps.limits.max_text_chars, field="query")
    check_limit(limit)
    if fusion is not None:
        fusion.check()
    if candidates is not None and not limit <= candidates <= MAX_LIMIT:
        raise InvalidInput(
            f"candidates must be between limit ({limit}) and {MAX_LIMIT}", field="candidates"
        )
    filter_ = check_filter(filter_, max_depth=deps.limits.max_json_depth)  # API, CLI, library
    if mmr is not None:
        mmr.check(limit)
    target = await resolve(deps, collection)
    record, chunks = target.record, target.chunks
    distance = distance or record.distance
    fetch = mmr.fetch_k if mmr is not None else limit
    depth = candidates or hybrid_depth(fetch)
    # Hybrid: the lexical leg needs no vector, so it runs while the query is embedded and the
    # dense leg searched (on a connection of its own): the legs' times overlap, not add up.
    lexical_leg: asyncio.Task[list[SearchHit]] | None = None
    if mode is SearchMode.HYBRID:
        lexical_leg = asyncio.create_task(chunks.bm25.search(query, limit=depth, filter_=filter_))
    try:
        vector, truncated = None, False
        if mode is not SearchMode.LEXICAL or mmr is not None:
            batch = await target.embed([query])
            vector, truncated = batch.vectors[0], batch.truncated[0]
        if mode is SearchMode.DENSE:
            assert vector is not None
            hits = await chunks.search(
                vector,
                limit=fetch,
                distance=distance,
                filter_=filter_,
                exact=exact,
                ef_search=ef_search,
                probes=probes,
                lexemes_of=query if require_lexemes else None,
            )
        elif lexical_leg is None:
            hits = await chunks.bm25.search(query, limit=fetch, filter_=filter_)
        else:
            assert vector is not None
            dense = await chunks.search(
                vector,
                limit=depth,
                distance=record.layout.index_distance,
                filter_=filter_,
                lexemes_of=query if require_lexemes else None,
            )
            lexical = await lexical_leg
            fusion = fusion or (Fusion.from_dict(record.fusion) if record.fusion else Fusion())
            hits = fuse(dense, lexical, fusion, limit=fetch)
    finally:
        if lexical_leg is not None and not lexical_leg.done():  # the other leg failed
            lexical_leg.cancel()
            await asyncio.gather(lexical_leg, return_exceptions=True)
    if mmr is not None and vector is not None and hits:
        stored = await chunks.vectors([hit.chunk_id for hit in hits])
        # MMR compares by cosine; raw (non-unit) collections are scaled here, not stored so.
        pool = normalize_rows(np.stack([stored[hit.chunk_id] for hit in hits]))
        query_unit = normalize_rows(vector[None, :])[0]
        order = maximal_marginal_relevance(query_unit, pool, limit=limit, lambda_=mmr.lambda_)
        hits = [hits[i] for i in order]
    return SearchOutcome(hits, record.model, distance, truncated, record.name)

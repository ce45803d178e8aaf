"""POST /search/pgvector (the brief's similarity search) and POST /search (dense, lexical or
hybrid)."""

from __future__ import annotations

from fastapi import APIRouter

from embedsearch.api.deps import DepsDep
from embedsearch.api.limits import JsonRoute
from embedsearch.api.schemas import (
    ERROR_RESPONSES,
    SearchAnyRequest,
    SearchRequest,
    SearchResponse,
    SearchResult,
)
from embedsearch.core import search as use_case
from embedsearch.core.fusion import Fusion, FusionMethod
from embedsearch.core.search import MmrOptions, SearchOutcome
from embedsearch.core.search_mode import SearchMode

router = APIRouter(tags=["search"], route_class=JsonRoute)


def _response(outcome: SearchOutcome, mode: SearchMode) -> SearchResponse:
    return SearchResponse(
        results=[
            SearchResult(
                chunkId=hit.chunk_id,
                documentId=hit.document_id,
                score=hit.score,
                text=hit.text,
                metadata=hit.metadata,
            )
            for hit in outcome.hits
        ],
        mode=mode,
        collection=outcome.collection,
        model=outcome.model,
        distance=outcome.distance,
        queryTruncated=outcome.query_truncated,
    )


@router.post("/search/pgvector", response_model=SearchResponse, responses=ERROR_RESPONSES)
async def search_pgvector(body: SearchRequest, deps: DepsDep) -> SearchResponse:
    """Nearest chunks to the query; `score` is the pgvector distance, smallest first."""
    outcome = await use_case.search(
        deps,
        body.query,
        limit=body.limit,
        distance=body.distance,
        collection=body.collection,
        filter_=body.filter,
    )
    return _response(outcome, SearchMode.DENSE)


@router.post("/search", response_model=SearchResponse, responses=ERROR_RESPONSES)
async def search(body: SearchAnyRequest, deps: DepsDep) -> SearchResponse:
    """Dense (as /search/pgvector: distance, smallest first), lexical (BM25 over PostgreSQL's
    text search lexemes: any of the words, or websearch syntax; largest first) or hybrid (the
    dense and lexical lists fused, `fusion`: convex or rrf; largest first). With `mmr`, the top
    `fetchK` results are re-ranked for diversity and returned in MMR order (relevance there is
    cosine similarity to the query; scores are those of the mode). A query of stop words or
    punctuation alone finds nothing, in every mode (/search/pgvector, the brief's pure vector
    search, still answers it)."""
    outcome = await use_case.search(
        deps,
        body.query,
        mode=body.mode,
        limit=body.limit,
        distance=body.distance,
        collection=body.collection,
        filter_=body.filter,
        fusion=_fusion(body),
        candidates=body.candidates,
        mmr=MmrOptions(body.mmr.lambda_, body.mmr.fetchK) if body.mmr else None,
        exact=body.exact,
        ef_search=body.efSearch,
        probes=body.probes,
        require_lexemes=True,
    )
    return _response(outcome, body.mode)


def _fusion(body: SearchAnyRequest) -> Fusion | None:
    if body.fusion is not None:
        return body.fusion.fusion()
    if body.rrfK is not None:
        return Fusion(FusionMethod.RRF, k=body.rrfK)
    return None

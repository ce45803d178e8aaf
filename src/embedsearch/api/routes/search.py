"""POST /search/pgvector (the brief's similarity search) and POST /search (dense, lexical or
hybrid)."""

from __future__ import annotations

from fastapi import APIRouter

from embedsearch.api.deps import DepsDep
from embedsearch.api.schemas import (
    ERROR_RESPONSES,
    SearchAnyRequest,
    SearchRequest,
    SearchResponse,
    SearchResult,
)
from embedsearch.core import search as use_case
from embedsearch.core.search import MmrOptions, SearchOutcome
from embedsearch.core.search_mode import SearchMode

router = APIRouter(tags=["search"])


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
    """Dense (as /search/pgvector: distance, smallest first), lexical (PostgreSQL full-text
    search: any of the words, or websearch syntax; ts_rank, largest first) or hybrid
    (Reciprocal Rank Fusion of both lists; RRF score, largest first). With `mmr`, the top
    `fetchK` results are re-ranked for diversity and returned in MMR order (relevance there is
    cosine similarity to the query; scores are those of the mode)."""
    outcome = await use_case.search(
        deps,
        body.query,
        mode=body.mode,
        limit=body.limit,
        distance=body.distance,
        collection=body.collection,
        filter_=body.filter,
        rrf_k=body.rrfK,
        mmr=MmrOptions(body.mmr.lambda_, body.mmr.fetchK) if body.mmr else None,
        exact=body.exact,
        ef_search=body.efSearch,
        probes=body.probes,
    )
    return _response(outcome, body.mode)

"""POST /search/pgvector: the brief's similarity search."""

from __future__ import annotations

from fastapi import APIRouter

from embedsearch.api.deps import ServiceDep
from embedsearch.api.schemas import ERROR_RESPONSES, SearchRequest, SearchResponse, SearchResult

router = APIRouter(tags=["search"])


@router.post("/search/pgvector", response_model=SearchResponse, responses=ERROR_RESPONSES)
async def search_pgvector(body: SearchRequest, service: ServiceDep) -> SearchResponse:
    """Nearest chunks to the query; `score` is the pgvector distance, smallest first."""
    outcome = await service.search(
        body.query,
        limit=body.limit,
        distance=body.distance,
        collection=body.collection,
        filter_=body.filter,
    )
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
        collection=outcome.collection,
        model=outcome.model,
        distance=outcome.distance,
        queryTruncated=outcome.query_truncated,
    )

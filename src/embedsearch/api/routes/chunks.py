"""POST /embed: the brief's embed-and-store endpoint."""

from __future__ import annotations

from fastapi import APIRouter

from embedsearch.api.deps import ServiceDep
from embedsearch.api.schemas import ERROR_RESPONSES, EmbedRequest, EmbedResponse

router = APIRouter(tags=["chunks"])


@router.post("/embed", response_model=EmbedResponse, responses=ERROR_RESPONSES)
async def embed(body: EmbedRequest, service: ServiceDep) -> EmbedResponse:
    """Embed one chunk of text and store (or replace) it under its chunkId."""
    outcome = await service.embed_chunk(body.chunkId, body.text, body.metadata)
    return EmbedResponse(
        chunkId=outcome.chunk_id,
        dimensions=outcome.dimensions,
        model=outcome.model,
        created=outcome.created,
        truncated=outcome.truncated,
        tokens=outcome.tokens,
    )

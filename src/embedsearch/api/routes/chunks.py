"""POST /embed (the brief's embed-and-store endpoint) and POST /embed/batch."""

from __future__ import annotations

from fastapi import APIRouter

from embedsearch.api.deps import DepsDep
from embedsearch.api.limits import JsonRoute
from embedsearch.api.schemas import (
    ERROR_RESPONSES,
    ChunkPublic,
    EmbedBatchRequest,
    EmbedBatchResponse,
    EmbedRequest,
    EmbedResponse,
)
from embedsearch.core import chunks
from embedsearch.core.chunks import ChunkInput
from embedsearch.core.constants import DEFAULT_COLLECTION

router = APIRouter(tags=["chunks"], route_class=JsonRoute)


@router.post("/embed", response_model=EmbedResponse, responses=ERROR_RESPONSES)
async def embed(body: EmbedRequest, deps: DepsDep) -> EmbedResponse:
    """Embed one chunk of text and store (or replace) it under its chunkId."""
    outcome = await chunks.embed_chunk(
        deps, body.chunkId, body.text, body.metadata, body.collection
    )
    return EmbedResponse(
        chunkId=outcome.chunk_id,
        dimensions=outcome.dimensions,
        model=outcome.model,
        created=outcome.created,
        truncated=outcome.truncated,
        tokens=outcome.tokens,
    )


@router.post("/embed/batch", response_model=EmbedBatchResponse, responses=ERROR_RESPONSES)
async def embed_batch(body: EmbedBatchRequest, deps: DepsDep) -> EmbedBatchResponse:
    """Embed and store many chunks in one transaction: all are stored, or none."""
    items = [ChunkInput(item.chunkId, item.text, item.metadata) for item in body.items]
    outcome = await chunks.embed_batch(deps, items, body.collection)
    return EmbedBatchResponse(
        count=len(outcome.chunk_ids),
        dimensions=outcome.dimensions,
        model=outcome.model,
        chunkIds=outcome.chunk_ids,
        created=outcome.created,
        truncated=outcome.truncated,
    )


@router.get("/chunks/{chunk_id:path}", response_model=ChunkPublic, responses=ERROR_RESPONSES)
async def get_chunk(chunk_id: str, deps: DepsDep, collection: str | None = None) -> ChunkPublic:
    """A stored chunk: its text, metadata, model and timestamps."""
    chunk = await chunks.get_chunk(deps, chunk_id, collection)
    return ChunkPublic(
        chunkId=chunk.chunk_id,
        collection=collection or DEFAULT_COLLECTION,
        text=chunk.text,
        metadata=chunk.metadata or {},
        model=chunk.model,
        dimensions=chunk.dimensions,
        documentId=chunk.document_id,
        createdAt=chunk.created_at,
        updatedAt=chunk.updated_at,
    )


@router.delete("/chunks/{chunk_id:path}", status_code=204, responses=ERROR_RESPONSES)
async def delete_chunk(chunk_id: str, deps: DepsDep, collection: str | None = None) -> None:
    """Delete one chunk."""
    await chunks.delete_chunk(deps, chunk_id, collection)

"""Documents: chunked with the collection model's tokenizer; re-posting replaces atomically."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter

from embedsearch.api.deps import DepsDep
from embedsearch.api.limits import JsonRoute
from embedsearch.api.schemas import ERROR_RESPONSES, DocumentCreate, DocumentPublic, DocumentStored
from embedsearch.core import documents
from embedsearch.core.chunking import ChunkingOptions
from embedsearch.core.constants import DEFAULT_COLLECTION
from embedsearch.core.documents import DocumentInput

router = APIRouter(tags=["documents"], route_class=JsonRoute)


@router.post("/documents", response_model=DocumentStored, responses=ERROR_RESPONSES)
async def put_document(body: DocumentCreate, deps: DepsDep) -> DocumentStored:
    """Split a document into chunks (ids `documentId#0..n`), embed and store them. Posting the
    same documentId again replaces its chunks; unchanged chunks are not re-embedded."""
    chunking = body.chunking
    options = ChunkingOptions(chunking.maxTokens, chunking.overlap) if chunking else None
    outcome = await documents.put(
        deps,
        [DocumentInput(body.documentId, body.text, body.metadata)],
        collection=body.collection,
        options=options,
    )
    status: Literal["new", "updated", "unchanged"] = (
        "new" if outcome.new else "updated" if outcome.updated else "unchanged"
    )
    return DocumentStored(
        documentId=body.documentId,
        collection=body.collection or DEFAULT_COLLECTION,
        status=status,
        chunkIds=outcome.chunks.get(body.documentId, []),
        embedded=outcome.embedded,
    )


@router.get(
    "/documents/{document_id:path}", response_model=DocumentPublic, responses=ERROR_RESPONSES
)
async def get_document(
    document_id: str, deps: DepsDep, collection: str | None = None
) -> DocumentPublic:
    record = await documents.get(deps, document_id, collection)
    return DocumentPublic(
        documentId=record.document_id,
        collection=collection or DEFAULT_COLLECTION,
        metadata=record.metadata,
        chunkCount=record.chunk_count,
        chunkIds=record.chunk_ids,
        createdAt=record.created_at,
        updatedAt=record.updated_at,
    )


@router.delete("/documents/{document_id:path}", status_code=204, responses=ERROR_RESPONSES)
async def delete_document(document_id: str, deps: DepsDep, collection: str | None = None) -> None:
    """Delete a document and all its chunks."""
    await documents.delete(deps, document_id, collection)

"""Documents: split into chunks, embed only what changed, replace the old version atomically."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embedsearch.core.chunking import ChunkingOptions, split
from embedsearch.core.chunks import content_hash
from embedsearch.core.collections import Collection, resolve
from embedsearch.core.deps import Deps
from embedsearch.core.errors import InvalidInput, NotFound, StaleDocument
from embedsearch.core.validation import check_document_id, check_text
from embedsearch.embedders.base import Vectors
from embedsearch.store import ChunkRows
from embedsearch.store.records import DocumentRecord, DocumentWrite

_RETRIES = 3  # a concurrent writer changed the same document meanwhile: redo the diff


@dataclass(frozen=True)
class DocumentInput:
    document_id: str
    text: str
    metadata: dict[str, Any] | None = None


@dataclass
class IngestOutcome:
    """What happened to each document: new, updated (some chunks re-embedded), unchanged."""

    new: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    chunks: dict[str, list[str]] = field(default_factory=dict)  # document id -> chunk ids
    embedded: int = 0  # chunks sent to the model


def chunk_id(document_id: str, index: int) -> str:
    return f"{document_id}#{index}"


def document_hash(text: str, metadata: dict[str, Any], options: ChunkingOptions) -> str:
    """Identifies a document version: its text, metadata and how it was chunked."""
    settings = json.dumps([options.max_tokens, options.overlap, metadata], sort_keys=True)
    return content_hash(f"{settings}\x1f{text}")


@dataclass
class _PlannedDocument:
    document_id: str
    digest: str
    metadata: dict[str, Any]
    chunks: list[str]
    reused: dict[str, str] = field(default_factory=dict)  # chunk id -> stored hash
    to_embed: list[int] = field(default_factory=list)  # positions of chunks to embed


@dataclass
class Plan:
    """What a write will do: documents to (re)write, and which of their chunks need vectors."""

    target: Collection
    documents: list[_PlannedDocument] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def texts_to_embed(self) -> list[str]:
        return [doc.chunks[i] for doc in self.documents for i in doc.to_embed]


def validate(deps: Deps, documents: Sequence[DocumentInput]) -> None:
    """Fields are named as in POST /documents ("text"), or "documents[i].text" for several."""
    seen = set()
    for index, doc in enumerate(documents):
        prefix = "" if len(documents) == 1 else f"documents[{index}]."
        check_document_id(doc.document_id, field=f"{prefix}documentId")
        check_text(doc.text, max_chars=deps.limits.max_document_chars, field=f"{prefix}text")
        deps.limits.check_metadata(doc.metadata, f"{prefix}metadata")
        if doc.document_id in seen:
            raise InvalidInput(
                f"document {doc.document_id!r} appears twice", field=f"{prefix}documentId"
            )
        seen.add(doc.document_id)


async def put(
    deps: Deps,
    documents: Sequence[DocumentInput],
    *,
    collection: str | None = None,
    options: ChunkingOptions | None = None,
) -> IngestOutcome:
    """Store documents (all in one transaction). Chunks whose text is unchanged are not
    re-embedded; documents whose text, metadata and chunking are unchanged are skipped."""
    validate(deps, documents)
    target = await resolve(deps, collection)
    options = options or ChunkingOptions()
    for attempt in range(_RETRIES):
        plan = await prepare(documents, target, options)
        try:
            return await write_plan(plan, await embed_plan(plan))
        except StaleDocument:
            if attempt == _RETRIES - 1:
                raise
    raise AssertionError("unreachable")


async def prepare(
    documents: Sequence[DocumentInput], target: Collection, options: ChunkingOptions
) -> Plan:
    """Chunk the documents and find what must be embedded (reads only)."""
    stored_documents = target.chunks.documents
    plan = Plan(target)
    states = await stored_documents.states([d.document_id for d in documents])
    embedder = None
    for doc in documents:
        metadata = doc.metadata or {}
        digest = document_hash(doc.text, metadata, options)
        state = states.get(doc.document_id)
        if state is not None and state.content_hash == digest:
            plan.unchanged.append(doc.document_id)
            continue
        embedder = embedder or (await target.worker()).embedder
        chunks = split(doc.text, embedder, options)
        if not chunks:
            raise InvalidInput(f"document {doc.document_id!r} has no text to embed", field="text")
        plan.documents.append(_PlannedDocument(doc.document_id, digest, metadata, chunks))
    stored = await stored_documents.chunk_hashes([d.document_id for d in plan.documents])
    for planned in plan.documents:
        for position, text in enumerate(planned.chunks):
            cid = chunk_id(planned.document_id, position)
            if stored.get(cid) == content_hash(text):
                planned.reused[cid] = stored[cid]
            else:
                planned.to_embed.append(position)
    return plan


async def embed_plan(plan: Plan) -> Vectors:
    texts = plan.texts_to_embed()
    if not texts:
        return np.zeros((0, plan.target.record.dimensions), dtype=np.float32)
    return (await plan.target.embed(texts)).vectors


async def write_plan(plan: Plan, vectors: Vectors) -> IngestOutcome:
    """Write every planned document in one transaction."""
    record = plan.target.record
    outcome = IngestOutcome(unchanged=list(plan.unchanged))
    writes, start = [], 0
    for doc in plan.documents:
        texts = [doc.chunks[i] for i in doc.to_embed]
        rows = ChunkRows(
            chunk_ids=[chunk_id(doc.document_id, i) for i in doc.to_embed],
            vectors=vectors[start : start + len(texts)],
            model=record.model,
            contents=texts,
            content_hashes=[content_hash(t) for t in texts],
            metadata=[doc.metadata] * len(texts),
            document_ids=[doc.document_id] * len(texts),
        )
        start += len(texts)
        chunk_ids = [chunk_id(doc.document_id, i) for i in range(len(doc.chunks))]
        writes.append(
            DocumentWrite(doc.document_id, doc.digest, doc.metadata, chunk_ids, doc.reused, rows)
        )
        outcome.chunks[doc.document_id] = chunk_ids
    if writes:
        created = await plan.target.chunks.documents.write(writes)
        for document, new in zip(writes, created, strict=True):
            (outcome.new if new else outcome.updated).append(document.document_id)
    outcome.embedded = start
    return outcome


async def get(deps: Deps, document_id: str, collection: str | None = None) -> DocumentRecord:
    check_document_id(document_id)
    target = await resolve(deps, collection)
    record = await target.chunks.documents.get(document_id)
    if record is None:
        raise NotFound(f"document {document_id!r} does not exist", field="documentId")
    return record


async def delete(deps: Deps, document_id: str, collection: str | None = None) -> None:
    check_document_id(document_id)
    target = await resolve(deps, collection)
    if not await target.chunks.documents.delete(document_id):
        raise NotFound(f"document {document_id!r} does not exist", field="documentId")

"""Documents: split into chunks, embed only what changed, replace the old version atomically."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from embedsearch.chunking import ChunkingOptions, split
from embedsearch.errors import InvalidInput, NotFound
from embedsearch.service import SearchService, Target, content_hash
from embedsearch.store import ChunkRows
from embedsearch.store.pgstore import StaleDocument
from embedsearch.store.records import DocumentRecord, DocumentWrite
from embedsearch.validation import check_document_id, check_metadata, check_text

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
    return content_hash(
        f"{options.max_tokens}/{options.overlap}\x1f{sorted(metadata.items())!r}\x1f{text}"
    )


class DocumentService:
    def __init__(self, service: SearchService) -> None:
        self.service = service

    def validate(self, documents: Sequence[DocumentInput], field: str = "documents") -> None:
        seen = set()
        for index, doc in enumerate(documents):
            where = field if len(documents) == 1 else f"{field}[{index}]"
            check_document_id(
                doc.document_id,
                field="documentId" if len(documents) == 1 else f"{where}.documentId",
            )
            check_text(
                doc.text,
                max_chars=self.service.max_text_chars * 100,
                field="text" if len(documents) == 1 else f"{where}.text",
            )
            check_metadata(doc.metadata)
            if doc.document_id in seen:
                raise InvalidInput(f"document {doc.document_id!r} appears twice", field=where)
            seen.add(doc.document_id)

    async def put(
        self,
        documents: Sequence[DocumentInput],
        *,
        collection: str | None = None,
        options: ChunkingOptions | None = None,
        skip_unchanged: bool = True,
    ) -> IngestOutcome:
        """Store documents (all in one transaction). Chunks whose text is unchanged are not
        re-embedded; documents whose text, metadata and chunking are unchanged are skipped."""
        self.validate(documents)
        options = options or ChunkingOptions()
        target = await self.service.target(collection)
        for attempt in range(_RETRIES):
            try:
                return await self._put_once(documents, target, options, skip_unchanged)
            except StaleDocument:
                if attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    async def _put_once(
        self,
        documents: Sequence[DocumentInput],
        target: Target,
        options: ChunkingOptions,
        skip_unchanged: bool,
    ) -> IngestOutcome:
        store, record = self.service.store, target.record
        outcome = IngestOutcome()
        ids = [doc.document_id for doc in documents]
        states = await store.document_states(record.name, ids)
        pending = []
        for doc in documents:
            metadata = doc.metadata or {}
            digest = document_hash(doc.text, metadata, options)
            state = states.get(doc.document_id)
            if skip_unchanged and state is not None and state.content_hash == digest:
                outcome.unchanged.append(doc.document_id)
                continue
            chunks = split(doc.text, target.worker.embedder, options)
            if not chunks:
                raise InvalidInput(
                    f"document {doc.document_id!r} has no text to embed", field="text"
                )
            pending.append((doc, metadata, digest, chunks))
        if not pending:
            return outcome
        stored = await store.chunk_hashes(record.table, [doc.document_id for doc, *_ in pending])
        to_embed: list[tuple[int, str, str]] = []  # (pending index, chunk id, text)
        writes_reused: list[dict[str, str]] = []
        for index, (doc, _, _, chunks) in enumerate(pending):
            reused = {}
            for position, text in enumerate(chunks):
                cid = chunk_id(doc.document_id, position)
                if stored.get(cid) == content_hash(text):
                    reused[cid] = stored[cid]
                else:
                    to_embed.append((index, cid, text))
            writes_reused.append(reused)
        vectors = (
            (await target.worker.embed_async([text for _, _, text in to_embed])).vectors
            if to_embed
            else None
        )
        writes = []
        for index, (doc, metadata, digest, chunks) in enumerate(pending):
            rows_at = [i for i, item in enumerate(to_embed) if item[0] == index]
            texts = [to_embed[i][2] for i in rows_at]
            rows = ChunkRows(
                chunk_ids=[to_embed[i][1] for i in rows_at],
                vectors=vectors[rows_at] if vectors is not None else _no_vectors(record.dimensions),
                model=record.model,
                contents=texts,
                content_hashes=[content_hash(t) for t in texts],
                metadata=[metadata] * len(rows_at),
                document_ids=[doc.document_id] * len(rows_at),
            )
            chunk_ids = [chunk_id(doc.document_id, i) for i in range(len(chunks))]
            writes.append(
                DocumentWrite(
                    doc.document_id, digest, metadata, chunk_ids, writes_reused[index], rows
                )
            )
            outcome.chunks[doc.document_id] = chunk_ids
        created = await store.write_documents(record.name, writes)
        for write, new in zip(writes, created, strict=True):
            (outcome.new if new else outcome.updated).append(write.document_id)
        outcome.embedded = len(to_embed)
        return outcome

    async def get(self, document_id: str, collection: str | None = None) -> DocumentRecord:
        check_document_id(document_id)
        target = await self.service.target(collection)
        record = await self.service.store.get_document(target.record.name, document_id)
        if record is None:
            raise NotFound(f"document {document_id!r} does not exist", field="documentId")
        return record

    async def delete(self, document_id: str, collection: str | None = None) -> None:
        check_document_id(document_id)
        target = await self.service.target(collection)
        if not await self.service.store.delete_document(target.record.name, document_id):
            raise NotFound(f"document {document_id!r} does not exist", field="documentId")


def _no_vectors(dimensions: int) -> Any:
    import numpy as np

    return np.zeros((0, dimensions), dtype=np.float32)

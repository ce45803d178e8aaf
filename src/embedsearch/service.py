"""Use cases: embed-and-store a chunk, search, embed texts. Called by the API, CLI and library."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from embedsearch.distance import Distance
from embedsearch.embedders.base import EmbeddingBatch
from embedsearch.embedders.worker import EmbeddingWorker
from embedsearch.errors import InvalidInput, PayloadTooLarge
from embedsearch.store import ChunkRows, PgStore, SearchHit
from embedsearch.validation import check_chunk_id, check_limit, check_metadata, check_text


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class EmbedOutcome:
    chunk_id: str
    dimensions: int
    model: str
    created: bool
    truncated: bool
    tokens: int | None


@dataclass(frozen=True)
class ChunkInput:
    chunk_id: str
    text: str
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class BatchOutcome:
    chunk_ids: list[str]
    dimensions: int
    model: str
    created: int
    truncated: list[str]


@dataclass(frozen=True)
class SearchOutcome:
    hits: list[SearchHit]
    model: str
    distance: Distance
    query_truncated: bool


class SearchService:
    def __init__(
        self,
        worker: EmbeddingWorker,
        store: PgStore,
        *,
        max_text_chars: int,
        max_batch_items: int = 1000,
    ) -> None:
        self.worker = worker
        self.store = store
        self.max_text_chars = max_text_chars
        self.max_batch_items = max_batch_items

    @property
    def model(self) -> str:
        return self.worker.embedder.name

    @property
    def dimensions(self) -> int:
        return self.worker.embedder.dimensions

    async def embed_chunk(
        self, chunk_id: str, text: str, metadata: dict[str, Any] | None = None
    ) -> EmbedOutcome:
        check_chunk_id(chunk_id)
        check_text(text, max_chars=self.max_text_chars)
        metadata = check_metadata(metadata)
        batch = await self.worker.embed_async([text])
        rows = ChunkRows(
            [chunk_id], batch.vectors, self.model, [text], [content_hash(text)], [metadata]
        )
        (created,) = await self.store.upsert(rows)
        tokens = batch.token_counts[0] if batch.token_counts else None
        return EmbedOutcome(
            chunk_id, self.dimensions, self.model, created, batch.truncated[0], tokens
        )

    async def embed_batch(self, items: Sequence[ChunkInput], field: str = "items") -> BatchOutcome:
        """Embed and store many chunks in one transaction: all of them, or none if any fails."""
        if len(items) > self.max_batch_items:
            raise PayloadTooLarge(
                f"{len(items)} items in one request; at most {self.max_batch_items}", field=field
            )
        if not items:
            raise InvalidInput(f"{field} must not be empty", field=field)
        seen: dict[str, int] = {}
        metadata = []
        for index, item in enumerate(items):
            where = f"{field}[{index}]"
            check_chunk_id(item.chunk_id, field=f"{where}.chunkId")
            check_text(item.text, max_chars=self.max_text_chars, field=f"{where}.text")
            metadata.append(check_metadata(item.metadata, field=f"{where}.metadata"))
            if item.chunk_id in seen:
                raise InvalidInput(
                    f"{where}.chunkId repeats {field}[{seen[item.chunk_id]}].chunkId",
                    field=f"{where}.chunkId",
                )
            seen[item.chunk_id] = index
        texts = [item.text for item in items]
        batch = await self.worker.embed_async(texts)
        chunk_ids = [item.chunk_id for item in items]
        rows = ChunkRows(
            chunk_ids, batch.vectors, self.model, texts, [content_hash(t) for t in texts], metadata
        )
        created = await self.store.upsert(rows)
        return BatchOutcome(
            chunk_ids,
            self.dimensions,
            self.model,
            sum(created),
            [cid for cid, cut in zip(chunk_ids, batch.truncated, strict=True) if cut],
        )

    async def search(
        self, query: str, *, limit: int = 5, distance: Distance = Distance.COSINE
    ) -> SearchOutcome:
        check_text(query, max_chars=self.max_text_chars, field="query")
        check_limit(limit)
        batch = await self.worker.embed_async([query])
        hits = await self.store.search(batch.vectors[0], limit=limit, distance=distance)
        return SearchOutcome(hits, self.model, distance, batch.truncated[0])

    async def embed_texts(self, texts: list[str], field: str = "input") -> EmbeddingBatch:
        for index, text in enumerate(texts):
            check_text(text, max_chars=self.max_text_chars, field=f"{field}[{index}]")
        return await self.worker.embed_async(texts)

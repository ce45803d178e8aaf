"""Use cases: collections, embed-and-store chunks, search. Called by the API, CLI and library."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedsearch.distance import Distance
from embedsearch.embedders.base import EmbeddingBatch, normalize_rows
from embedsearch.embedders.registry import EmbedderRegistry
from embedsearch.embedders.worker import EmbeddingWorker
from embedsearch.errors import Conflict, InvalidInput, ModelMismatch, NotFound, PayloadTooLarge
from embedsearch.mmr import mmr as maximal_marginal_relevance
from embedsearch.search_mode import SearchMode
from embedsearch.store import ChunkRows, PgStore, SearchHit
from embedsearch.store.group_commit import GroupCommit
from embedsearch.store.pgstore import DEFAULT_COLLECTION
from embedsearch.store.records import ChunkRecord, CollectionOptions, CollectionRecord
from embedsearch.validation import (
    MAX_LIMIT,
    check_chunk_id,
    check_collection_name,
    check_embedder_spec,
    check_limit,
    check_metadata,
    check_text,
)
from embedsearch.vector_index import IndexType

_DEFAULT_RECORD_TTL_S = 5.0


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChunkInput:
    chunk_id: str
    text: str
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class EmbedOutcome:
    chunk_id: str
    dimensions: int
    model: str
    created: bool
    truncated: bool
    tokens: int | None


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
    collection: str


@dataclass(frozen=True)
class MmrOptions:
    """Maximal Marginal Relevance: pick `limit` of the top `fetch_k` results, trading relevance
    (lambda_ = 1) against novelty (lambda_ = 0)."""

    lambda_: float = 0.5
    fetch_k: int = 20

    def check(self, limit: int) -> None:
        if not 0.0 <= self.lambda_ <= 1.0:
            raise InvalidInput("mmr.lambda must be between 0 and 1", field="mmr.lambda")
        if not limit <= self.fetch_k <= MAX_LIMIT:
            raise InvalidInput(
                f"mmr.fetchK must be between limit ({limit}) and {MAX_LIMIT}", field="mmr.fetchK"
            )


@dataclass(frozen=True)
class Target:
    """A collection and the model worker that embeds for it."""

    record: CollectionRecord
    worker: EmbeddingWorker

    async def embed(self, texts: list[str]) -> EmbeddingBatch:
        """Embed for this collection: unit length unless it keeps the model's raw vectors."""
        batch = await self.worker.embed_async(texts)
        if not self.record.normalized:
            return batch
        return EmbeddingBatch(normalize_rows(batch.vectors), batch.token_counts, batch.truncated)


class SearchService:
    def __init__(
        self,
        embedders: EmbedderRegistry,
        store: PgStore,
        *,
        max_text_chars: int,
        max_batch_items: int = 1000,
        max_document_chars: int = 10_000_000,
        index_build_memory_bytes: int = 1024 * 2**20,
        defer_index_min_documents: int = 1000,
    ) -> None:
        self.embedders = embedders
        self.store = store
        self.max_text_chars = max_text_chars
        self.max_batch_items = max_batch_items
        self.max_document_chars = max_document_chars
        self.index_build_memory_bytes = index_build_memory_bytes
        self.defer_index_min_documents = defer_index_min_documents
        self._default: tuple[float, CollectionRecord] | None = None
        # Concurrent single-chunk writes share transactions (see store.group_commit).
        self._single_writes = GroupCommit(store.upsert)

    @property
    def worker(self) -> EmbeddingWorker:
        return self.embedders.default

    @property
    def model(self) -> str:
        return self.worker.embedder.name

    @property
    def dimensions(self) -> int:
        return self.worker.embedder.dimensions

    # Collections.

    async def target(self, collection: str | None) -> Target:
        """Look a collection up (404 if missing) with the worker of its model."""
        name = check_collection_name(collection or DEFAULT_COLLECTION)
        # The default collection cannot be dropped and its model is fixed: the brief's path
        # reuses its record for a few seconds (its index settings may change elsewhere).
        cached = self._default if name == DEFAULT_COLLECTION else None
        fresh = cached is not None and time.monotonic() - cached[0] < _DEFAULT_RECORD_TTL_S
        record = cached[1] if cached and fresh else await self.store.get_collection(name)
        if record is None:
            raise NotFound(f"collection {name!r} does not exist", field="collection")
        if name == DEFAULT_COLLECTION and not fresh:
            self._default = (time.monotonic(), record)
        if name == DEFAULT_COLLECTION or record.embedder is None:
            worker = self.worker
        else:
            worker = await self.embedders.get(record.embedder, record.dimensions)
        if (worker.embedder.name, worker.embedder.dimensions) != (record.model, record.dimensions):
            raise ModelMismatch(
                f"collection {name!r} holds {record.model} ({record.dimensions} dims) vectors but "
                f"its embedder now gives {worker.embedder.name} ({worker.embedder.dimensions})"
            )
        return Target(record, worker)

    def forget_cached(self, name: str) -> None:
        if name == DEFAULT_COLLECTION:
            self._default = None

    async def create_collection(
        self,
        name: str,
        *,
        embedder: str | None = None,
        dimensions: int | None = None,
        options: CollectionOptions | None = None,
    ) -> CollectionRecord:
        check_collection_name(name, field="name")
        spec = check_embedder_spec(embedder or self.embedders.default_spec)
        options = options or CollectionOptions()
        options.index.check()
        if options.index.type is IndexType.IVFFLAT:
            raise InvalidInput(
                "IVFFlat learns its lists from stored vectors: create the collection with hnsw "
                "or none, load it, then build IVFFlat (POST /collections/{name}/index)",
                field="index.type",
            )
        if await self.store.get_collection(name) is not None:
            raise Conflict(f"collection {name!r} already exists", field="name")
        worker = await self.embedders.get(spec, dimensions)
        return await self.store.create_collection(
            name,
            model=worker.embedder.name,
            dimensions=worker.embedder.dimensions,
            embedder=spec,
            options=options,
        )

    async def collections(self) -> list[tuple[CollectionRecord, int]]:
        return [(r, await self.store.count(r.table)) for r in await self.store.list_collections()]

    async def collection(self, name: str) -> tuple[CollectionRecord, int]:
        record = (await self.target(name)).record
        return record, await self.store.count(record.table)

    async def drop_collection(self, name: str) -> None:
        check_collection_name(name, field="name")
        if name == DEFAULT_COLLECTION:
            raise InvalidInput("the default collection cannot be dropped", field="name")
        if not await self.store.drop_collection(name):
            raise NotFound(f"collection {name!r} does not exist", field="name")

    # Chunks.

    async def embed_chunk(
        self,
        chunk_id: str,
        text: str,
        metadata: dict[str, Any] | None = None,
        collection: str | None = None,
    ) -> EmbedOutcome:
        check_chunk_id(chunk_id)
        check_text(text, max_chars=self.max_text_chars)
        metadata = check_metadata(metadata)
        target = await self.target(collection)
        batch = await target.embed([text])
        rows = ChunkRows(
            [chunk_id], batch.vectors, target.record.model, [text], [content_hash(text)], [metadata]
        )
        (created,) = await self._single_writes.upsert(rows, target.record.layout)
        tokens = batch.token_counts[0] if batch.token_counts else None
        record = target.record
        return EmbedOutcome(
            chunk_id, record.dimensions, record.model, created, batch.truncated[0], tokens
        )

    async def embed_batch(
        self, items: Sequence[ChunkInput], collection: str | None = None, field: str = "items"
    ) -> BatchOutcome:
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
        target = await self.target(collection)
        texts = [item.text for item in items]
        batch = await target.embed(texts)
        chunk_ids = [item.chunk_id for item in items]
        rows = ChunkRows(
            chunk_ids,
            batch.vectors,
            target.record.model,
            texts,
            [content_hash(t) for t in texts],
            metadata,
        )
        created = await self.store.upsert(rows, target.record.layout)
        return BatchOutcome(
            chunk_ids,
            target.record.dimensions,
            target.record.model,
            sum(created),
            [cid for cid, cut in zip(chunk_ids, batch.truncated, strict=True) if cut],
        )

    async def get_chunk(self, chunk_id: str, collection: str | None = None) -> ChunkRecord:
        check_chunk_id(chunk_id)
        target = await self.target(collection)
        chunk = await self.store.get_chunk(chunk_id, target.record.table)
        if chunk is None:
            raise NotFound(f"chunk {chunk_id!r} does not exist", field="chunkId")
        return chunk

    async def delete_chunk(self, chunk_id: str, collection: str | None = None) -> None:
        check_chunk_id(chunk_id)
        target = await self.target(collection)
        if not await self.store.delete_chunk(target.record.name, chunk_id):
            raise NotFound(f"chunk {chunk_id!r} does not exist", field="chunkId")

    # Search.

    async def search(
        self,
        query: str,
        *,
        limit: int = 5,
        distance: Distance | None = None,
        collection: str | None = None,
        filter_: dict[str, Any] | None = None,
    ) -> SearchOutcome:
        """Dense search: the brief's /search/pgvector."""
        return await self.search_any(
            query,
            mode=SearchMode.DENSE,
            limit=limit,
            distance=distance,
            collection=collection,
            filter_=filter_,
        )

    async def search_any(
        self,
        query: str,
        *,
        mode: SearchMode,
        limit: int = 5,
        distance: Distance | None = None,
        collection: str | None = None,
        filter_: dict[str, Any] | None = None,
        rrf_k: int = 60,
        mmr: MmrOptions | None = None,
        exact: bool = False,
        ef_search: int | None = None,
        probes: int | None = None,
    ) -> SearchOutcome:
        """Dense, lexical or hybrid search (POST /search), optionally re-ranked with MMR."""
        check_text(query, max_chars=self.max_text_chars, field="query")
        check_limit(limit)
        if filter_ is not None and not isinstance(filter_, dict):
            raise InvalidInput("filter must be a JSON object", field="filter")
        if mmr is not None:
            mmr.check(limit)
        target = await self.target(collection)
        record = target.record
        distance = distance or record.distance
        fetch = mmr.fetch_k if mmr is not None else limit
        vector, truncated = None, False
        if mode is not SearchMode.LEXICAL or mmr is not None:
            batch = await target.embed([query])
            vector, truncated = batch.vectors[0], batch.truncated[0]
        if mode is SearchMode.DENSE:
            assert vector is not None
            hits = await self.store.search(
                vector,
                limit=fetch,
                distance=distance,
                layout=record.layout,
                filter_=filter_,
                exact=exact,
                ef_search=ef_search,
                probes=probes,
            )
        else:
            hybrid_vector = vector if mode is SearchMode.HYBRID else None
            hits = await self.store.search_text(
                query,
                hybrid_vector,
                limit=fetch,
                layout=record.layout,
                filter_=filter_,
                rrf_k=rrf_k,
            )
        if mmr is not None and vector is not None and hits:
            stored = await self.store.vectors([hit.chunk_id for hit in hits], record.table)
            # MMR compares by cosine; raw (non-unit) collections are scaled here, not stored so.
            candidates = normalize_rows(np.stack([stored[hit.chunk_id] for hit in hits]))
            query_unit = normalize_rows(vector[None, :])[0]
            order = maximal_marginal_relevance(
                query_unit, candidates, limit=limit, lambda_=mmr.lambda_
            )
            hits = [hits[i] for i in order]
        return SearchOutcome(hits, record.model, distance, truncated, record.name)

    async def embed_texts(self, texts: list[str], field: str = "input") -> EmbeddingBatch:
        for index, text in enumerate(texts):
            check_text(text, max_chars=self.max_text_chars, field=f"{field}[{index}]")
        return await self.worker.embed_async(texts)

"""Chunks: embed and store one (the brief's POST /embed) or many at once, read, delete."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from embedsearch.core.collections import resolve
from embedsearch.core.deps import Deps
from embedsearch.core.errors import InvalidInput, NotFound, PayloadTooLarge
from embedsearch.core.validation import check_chunk_id, check_text
from embedsearch.store import ChunkRows
from embedsearch.store.records import ChunkRecord


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


async def embed_chunk(
    deps: Deps,
    chunk_id: str,
    text: str,
    metadata: dict[str, Any] | None = None,
    collection: str | None = None,
) -> EmbedOutcome:
    check_chunk_id(chunk_id)
    check_text(text, max_chars=deps.limits.max_text_chars)
    metadata = deps.limits.check_metadata(metadata, "metadata")
    target = await resolve(deps, collection)
    batch = await target.embed([text])
    record = target.record
    rows = ChunkRows(
        [chunk_id], batch.vectors, record.model, [text], [content_hash(text)], [metadata]
    )
    (created,) = await deps.single_writes.upsert(rows, target.chunks)
    tokens = batch.token_counts[0] if batch.token_counts else None
    return EmbedOutcome(
        chunk_id, record.dimensions, record.model, created, batch.truncated[0], tokens
    )


async def embed_batch(
    deps: Deps, items: Sequence[ChunkInput], collection: str | None = None, field: str = "items"
) -> BatchOutcome:
    """Embed and store many chunks in one transaction: all of them, or none if any fails."""
    limit = deps.limits.max_batch_items
    if len(items) > limit:
        raise PayloadTooLarge(f"{len(items)} items in one request; at most {limit}", field=field)
    if not items:
        raise InvalidInput(f"{field} must not be empty", field=field)
    seen: dict[str, int] = {}
    metadata = []
    for index, item in enumerate(items):
        where = f"{field}[{index}]"
        check_chunk_id(item.chunk_id, field=f"{where}.chunkId")
        check_text(item.text, max_chars=deps.limits.max_text_chars, field=f"{where}.text")
        metadata.append(deps.limits.check_metadata(item.metadata, f"{where}.metadata"))
        if item.chunk_id in seen:
            raise InvalidInput(
                f"{where}.chunkId repeats {field}[{seen[item.chunk_id]}].chunkId",
                field=f"{where}.chunkId",
            )
        seen[item.chunk_id] = index
    target = await resolve(deps, collection)
    texts = [item.text for item in items]
    batch = await target.embed(texts)
    chunk_ids = [item.chunk_id for item in items]
    record = target.record
    rows = ChunkRows(
        chunk_ids, batch.vectors, record.model, texts, [content_hash(t) for t in texts], metadata
    )
    created = await target.chunks.upsert(rows)
    return BatchOutcome(
        chunk_ids,
        record.dimensions,
        record.model,
        sum(created),
        [cid for cid, cut in zip(chunk_ids, batch.truncated, strict=True) if cut],
    )


async def get_chunk(deps: Deps, chunk_id: str, collection: str | None = None) -> ChunkRecord:
    check_chunk_id(chunk_id)
    target = await resolve(deps, collection)
    chunk = await target.chunks.get_chunk(chunk_id)
    if chunk is None:
        raise NotFound(f"chunk {chunk_id!r} does not exist", field="chunkId")
    return chunk


async def delete_chunk(deps: Deps, chunk_id: str, collection: str | None = None) -> None:
    check_chunk_id(chunk_id)
    target = await resolve(deps, collection)
    if not await target.chunks.delete_chunk(chunk_id):
        raise NotFound(f"chunk {chunk_id!r} does not exist", field="chunkId")

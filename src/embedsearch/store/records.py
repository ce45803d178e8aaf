"""Plain records passed between the service and the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from embedsearch.distance import Distance
from embedsearch.embedders.base import Vectors


@dataclass(frozen=True)
class CollectionRecord:
    name: str
    table: str
    model: str
    dimensions: int
    embedder: str | None  # provider spec, e.g. "local:all-MiniLM-L6-v2"
    distance: Distance
    created_at: datetime


@dataclass(frozen=True)
class ChunkRows:
    """Chunks to upsert, column by column (vectors is one (n, d) float32 array)."""

    chunk_ids: list[str]
    vectors: Vectors
    model: str
    contents: list[str]
    content_hashes: list[str]
    metadata: list[dict[str, Any]] = field(default_factory=list)
    document_ids: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.chunk_ids)


@dataclass(frozen=True)
class SearchHit:
    chunk_id: str
    score: float
    text: str | None
    metadata: dict[str, Any]
    document_id: str | None = None


@dataclass(frozen=True)
class ChunkRecord:
    chunk_id: str
    text: str | None
    metadata: dict[str, Any]
    model: str
    document_id: str | None
    created_at: datetime
    updated_at: datetime
    dimensions: int


@dataclass(frozen=True)
class DocumentState:
    content_hash: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class DocumentRecord:
    document_id: str
    content_hash: str
    metadata: dict[str, Any]
    chunk_count: int
    created_at: datetime
    updated_at: datetime
    chunk_ids: list[str]


@dataclass(frozen=True)
class DocumentWrite:
    """A new version of a document: replaces all its chunks atomically."""

    document_id: str
    content_hash: str
    metadata: dict[str, Any]
    chunk_ids: list[str]  # every chunk of the new version, in order
    reused: dict[str, str]  # chunk_id -> content hash already stored (not re-embedded)
    rows: ChunkRows  # the chunks that were (re-)embedded

"""Plain records passed between the service and the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from embedsearch.embedders.base import Vectors


@dataclass(frozen=True)
class ChunkRows:
    """Chunks to upsert, column by column (vectors is one (n, d) float32 array)."""

    chunk_ids: list[str]
    vectors: Vectors
    model: str
    contents: list[str]
    content_hashes: list[str]
    metadata: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.chunk_ids)


@dataclass(frozen=True)
class SearchHit:
    chunk_id: str
    score: float
    text: str | None
    metadata: dict[str, Any]

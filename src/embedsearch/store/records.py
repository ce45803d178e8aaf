"""Plain records passed between the service and the store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from embedsearch.core.constants import DEFAULT_TEXT_CONFIG
from embedsearch.core.distance import Distance
from embedsearch.core.vector_index import IndexSpec, IndexType, Storage
from embedsearch.embedders.base import Vectors


@dataclass(frozen=True)
class TableLayout:
    """What the store must know to write and search a collection's table."""

    table: str
    storage: Storage = Storage.VECTOR
    # Unit vectors: one cosine index orders every metric. Otherwise the index follows
    # `distance`, and a search by another metric scans exactly.
    normalized: bool = True
    distance: Distance = Distance.COSINE
    probes: int | None = None  # IVFFlat's default lists per query
    # Citus: the table is hash-distributed into this many shards (None: a plain table).
    shards: int | None = None

    @property
    def distributed(self) -> bool:
        return self.shards is not None

    def order_by(self, requested: Distance, *, exact: bool) -> Distance:
        """The operator to ORDER BY: the index's own, unless that would order wrongly."""
        if exact:
            return requested
        return Distance.COSINE if self.normalized else requested

    @property
    def index_distance(self) -> Distance:
        return Distance.COSINE if self.normalized else self.distance


@dataclass(frozen=True)
class CollectionOptions:
    """Chosen when a collection is created."""

    distance: Distance = Distance.COSINE
    storage: Storage = Storage.VECTOR
    normalized: bool = True
    index: IndexSpec = field(default_factory=IndexSpec)
    text_config: str = DEFAULT_TEXT_CONFIG  # PostgreSQL text search configuration (lexical)
    shards: int | None = None  # Citus: hash-distribute the chunk table into this many shards


@dataclass(frozen=True)
class CitusInfo:
    """The Citus cluster a coordinator leads."""

    workers: int  # active worker nodes
    server_version: int  # the coordinator's server_version_num


@dataclass(frozen=True)
class CollectionRecord:
    name: str
    table: str
    model: str
    dimensions: int
    embedder: str | None  # provider spec, e.g. "local:all-MiniLM-L6-v2"
    distance: Distance
    created_at: datetime
    storage: Storage = Storage.VECTOR
    normalized: bool = True
    probes: int | None = None
    index_rows: int | None = None  # rows present when the ANN index was last built
    index_built_at: datetime | None = None
    deferred_index: dict[str, Any] | None = None  # see IndexAdmin.defer
    text_config: str = DEFAULT_TEXT_CONFIG
    fusion: dict[str, Any] | None = None  # hybrid search's default fusion, if tuned
    shards: int | None = None  # Citus shards of the chunk table (None: a plain table)

    @property
    def layout(self) -> TableLayout:
        return TableLayout(
            self.table, self.storage, self.normalized, self.distance, self.probes, self.shards
        )


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


def concat_rows(parts: Sequence[ChunkRows]) -> ChunkRows | None:
    """Several row sets as one (None for none)."""
    if not parts:
        return None
    n = [len(p) for p in parts]
    return ChunkRows(
        chunk_ids=[c for p in parts for c in p.chunk_ids],
        vectors=np.concatenate([p.vectors for p in parts]),
        model=parts[0].model,
        contents=[c for p in parts for c in p.contents],
        content_hashes=[h for p in parts for h in p.content_hashes],
        metadata=[m for p, k in zip(parts, n, strict=True) for m in (p.metadata or [{}] * k)],
        document_ids=[
            d for p, k in zip(parts, n, strict=True) for d in (p.document_ids or [None] * k)
        ],
    )


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


@dataclass(frozen=True)
class VectorIndexState:
    """An ANN index as the catalog describes it."""

    name: str
    type: IndexType
    opclass: str
    options: dict[str, int]  # e.g. {"m": 16, "ef_construction": 64} or {"lists": 100}
    size_bytes: int
    valid: bool  # false: a failed concurrent build left it behind; the planner ignores it


@dataclass(frozen=True)
class IndexBuildProgress:
    """A running CREATE INDEX, from pg_stat_progress_create_index."""

    phase: str
    blocks_done: int
    blocks_total: int
    tuples_done: int
    tuples_total: int

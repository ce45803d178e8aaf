"""What every use case is given: the store, the embedders and the request limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from embedsearch.config import Settings
from embedsearch.core.constants import (
    DEFAULT_DEFER_INDEX_MIN_DOCUMENTS,
    DEFAULT_INDEX_BUILD_MEMORY_MB,
    DEFAULT_MAX_BATCH_ITEMS,
    DEFAULT_MAX_DOCUMENT_CHARS,
    DEFAULT_MAX_JSON_DEPTH,
    DEFAULT_MAX_METADATA_BYTES,
    DEFAULT_MAX_TEXT_CHARS,
)
from embedsearch.core.validation import check_metadata
from embedsearch.embedders.registry import EmbedderRegistry
from embedsearch.store import CollectionHandle, Store
from embedsearch.store.group_commit import GroupCommit
from embedsearch.store.records import CollectionRecord


@dataclass(frozen=True)
class Limits:
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    max_batch_items: int = DEFAULT_MAX_BATCH_ITEMS
    max_document_chars: int = DEFAULT_MAX_DOCUMENT_CHARS
    # A chunk's or document's metadata: compact UTF-8 JSON size, and nesting (also of filters).
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    index_build_memory_bytes: int = DEFAULT_INDEX_BUILD_MEMORY_MB * 2**20
    # A load of at least this many documents into an empty collection builds its HNSW index
    # once at the end (0: never).
    defer_index_min_documents: int = DEFAULT_DEFER_INDEX_MIN_DOCUMENTS

    def check_metadata(self, metadata: dict[str, Any] | None, field: str) -> dict[str, Any]:
        """core.validation.check_metadata with these limits."""
        return check_metadata(
            metadata, field, max_bytes=self.max_metadata_bytes, max_depth=self.max_json_depth
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_text_chars=settings.max_text_chars,
            max_batch_items=settings.max_batch_items,
            max_document_chars=settings.max_document_chars,
            max_metadata_bytes=settings.max_metadata_bytes,
            max_json_depth=settings.max_json_depth,
            index_build_memory_bytes=settings.index_build_memory_mb * 2**20,
            defer_index_min_documents=settings.defer_index_min_documents,
        )


@dataclass(frozen=True)
class CachedRecord:
    record: CollectionRecord
    at: float  # time.monotonic() when read


@dataclass
class Deps:
    store: Store
    embedders: EmbedderRegistry
    limits: Limits = field(default_factory=Limits)
    # Concurrent single-chunk writes to one collection share transactions (store.group_commit).
    single_writes: GroupCommit[CollectionHandle] = field(
        default_factory=lambda: GroupCommit(CollectionHandle.upsert)
    )
    # The default collection's record, reused for a few seconds (core.collections.resolve).
    default_record: CachedRecord | None = None

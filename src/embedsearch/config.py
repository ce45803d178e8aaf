"""One typed settings object, read from EMBEDSEARCH_* environment variables (or passed in)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from embedsearch.core.constants import (
    DEFAULT_DEFER_INDEX_MIN_DOCUMENTS,
    DEFAULT_EF_SEARCH,
    DEFAULT_EMBEDDER,
    DEFAULT_INDEX_BUILD_MEMORY_MB,
    DEFAULT_MAX_BATCH_ITEMS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_DOCUMENT_CHARS,
    DEFAULT_MAX_JSON_DEPTH,
    DEFAULT_MAX_METADATA_BYTES,
    DEFAULT_MAX_QUEUED_TEXTS,
    DEFAULT_MAX_TEXT_CHARS,
    DEFAULT_WRITE_RETRIES,
    HNSW_MAX_EF_SEARCH,
)
from embedsearch.core.validation import parse_embedder_spec


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("embedsearch"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMBEDSEARCH_", extra="ignore")

    # Unset: an embedded PostgreSQL 18 + pgvector under data_dir. Set: any PostgreSQL with pgvector.
    database_url: SecretStr | None = None
    data_dir: Path = Field(default_factory=default_data_dir)
    # "local:<model name or directory>", "openai:<model>" (OpenAI or any compatible server).
    embedder: str = DEFAULT_EMBEDDER
    # Output size for OpenAI models that accept `dimensions`; also the expected size otherwise.
    dimensions: int | None = Field(default=None, ge=1, le=16000)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    # Local model execution. onnx-int8: ONNX Runtime with dynamic int8 quantization (the
    # default: fastest for queries, nDCG@10 within 1% of torch fp32 on SciFact). openvino-bf16:
    # OpenVINO bf16 on AMX matrix units, ~1.9x int8's texts/s on long documents but ~3x slower
    # for one short query (per-call overhead with dynamic shapes), so not yet the default.
    # auto: by the CPU's features at start (embedders/cpu.py): AMX -> openvino-bf16, AVX-512
    # VNNI/AVX2 -> onnx-int8, else onnx (fp32). Exports cached in data_dir.
    backend: Literal["auto", "torch", "onnx", "onnx-int8", "openvino-bf16"] = "onnx-int8"
    threads: int | None = Field(default=None, ge=1, le=256)
    batch_size: int = Field(default=64, ge=1, le=4096)
    # Padded tokens per model call: long texts go in small batches, short ones in large.
    batch_tokens: int = Field(default=2048, ge=1)
    # How long the model worker waits to gather concurrent requests into one call.
    batch_wait_ms: float = Field(default=2.0, ge=0, le=1000)

    # OpenAI provider.
    openai_base_url: str | None = None
    openai_timeout_s: float = Field(default=30.0, gt=0)
    openai_max_retries: int = Field(default=4, ge=0, le=20)

    # Request limits.
    max_text_chars: int = Field(default=DEFAULT_MAX_TEXT_CHARS, ge=1)
    max_batch_items: int = Field(default=DEFAULT_MAX_BATCH_ITEMS, ge=1)
    max_document_chars: int = Field(default=DEFAULT_MAX_DOCUMENT_CHARS, ge=1)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    max_metadata_bytes: int = Field(default=DEFAULT_MAX_METADATA_BYTES, ge=2)
    max_json_depth: int = Field(default=DEFAULT_MAX_JSON_DEPTH, ge=1, le=1000)
    # Texts waiting for the local model; past it requests get 429 with Retry-After.
    max_queued_texts: int = Field(default=DEFAULT_MAX_QUEUED_TEXTS, ge=1)
    write_retries: int = Field(default=DEFAULT_WRITE_RETRIES, ge=0, le=20)

    # Access. Keys: comma-separated, or "@path" to a file with one key a line. Read keys may
    # search and read, not write. With no keys, only loopback clients are served unless
    # allow_unauthenticated (like Redis's protected mode).
    api_keys: SecretStr | None = None
    read_api_keys: SecretStr | None = None
    allow_unauthenticated: bool = False
    # Comma-separated origins allowed by CORS (unset: CORS off).
    cors_origins: str | None = None

    # On SIGTERM, how long requests in flight may run on; those still running then get 503.
    shutdown_timeout_s: int = Field(default=30, ge=0, le=3600)

    # Logs: "text" for people, "json" (one object a line) for collectors.
    log_format: Literal["text", "json"] = "text"
    # A load of at least this many documents into an empty collection builds its HNSW index
    # once at the end instead of insert by insert (0: never).
    defer_index_min_documents: int = Field(default=DEFAULT_DEFER_INDEX_MIN_DOCUMENTS, ge=0)
    # HNSW candidate list per search (recall against speed); a request may set its own.
    ef_search: int = Field(default=DEFAULT_EF_SEARCH, ge=1, le=HNSW_MAX_EF_SEARCH)
    # Upper bound for maintenance_work_mem while building an ANN index (sized from the rows).
    index_build_memory_mb: int = Field(default=DEFAULT_INDEX_BUILD_MEMORY_MB, ge=64)

    # Sources (tables kept in sync as documents): `embedsearch serve` runs their sync workers
    # unless source_sync is off (then `embedsearch sources run` does); rows per batch; how
    # often an empty change queue is looked at again.
    source_sync: bool = True
    source_batch_rows: int = Field(default=256, ge=1, le=10_000)
    source_poll_s: float = Field(default=0.5, gt=0, le=60)

    # Database.
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=10, ge=1)
    db_timeout_s: float = Field(default=5.0, gt=0)

    @field_validator("embedder")
    @classmethod
    def _embedder_has_provider(cls, value: str) -> str:
        parse_embedder_spec(value)
        return value

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

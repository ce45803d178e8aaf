"""One typed settings object, read from EMBEDSEARCH_* environment variables (or passed in)."""

from __future__ import annotations

import re
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
from embedsearch.core.errors import InvalidInput
from embedsearch.core.validation import parse_embedder_spec

READ_DATABASE_URLS_VAR = "EMBEDSEARCH_READ_DATABASE_URLS"
# A URL starts at each "postgresql://" (or "postgres://"): commas inside one (a multi-host
# URL, "h1,h2") do not split it.
_URL_START = re.compile(r",\s*(?=postgres(?:ql)?://)")


def split_database_urls(value: str) -> list[str]:
    """Comma-separated postgresql:// URLs. Errors name the position, never the text (it holds
    passwords)."""
    urls = [url.strip() for url in _URL_START.split(value.strip())]
    for number, url in enumerate(urls, 1):
        if not re.fullmatch(r"postgres(ql)?://[^,\s]\S*", url):
            raise InvalidInput(
                f"{READ_DATABASE_URLS_VAR}: item {number} is not a postgresql:// URL"
                " (comma-separated postgresql://user:password@host:port/db URLs)",
                field=READ_DATABASE_URLS_VAR,
            )
    return urls


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

    # Local model execution. auto (the default): by the CPU's features at start
    # (embedders/cpu.py), logged: AMX -> openvino-bf16 (OpenVINO bf16 on the matrix units, ~2x
    # int8's texts/s on long documents, one vector per text whatever its batch), AVX-512
    # VNNI/AVX2/ARM64 -> onnx-int8 (ONNX Runtime, dynamic int8), else onnx (fp32). Exports are
    # cached in data_dir and, once verified, served without torch (embedders/light.py).
    backend: Literal["auto", "torch", "onnx", "onnx-int8", "openvino-bf16"] = "auto"
    # Serve a cached, verified export without importing torch or sentence-transformers
    # (embedders/light.py); 0 loads through sentence-transformers every time.
    light_runtime: bool = True
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

    # Read replicas (PostgreSQL streaming replicas of database_url): comma-separated
    # postgresql:// URLs. Searches and reads go to a healthy one, writes to the primary.
    read_database_urls: SecretStr | None = None
    # A replica further behind the primary than this is skipped until it catches up.
    replica_max_lag_s: float = Field(default=5.0, gt=0)
    # How often each replica's health and lag are checked (in the background).
    replica_check_interval_s: float = Field(default=1.0, gt=0, le=60)
    # A read with X-Embedsearch-Min-Lsn waits this long for a replica to replay that
    # position; past it, the primary serves it.
    min_lsn_wait_s: float = Field(default=0.5, ge=0, le=60)
    # Sources (tables kept in sync as documents): `embedsearch serve` runs their sync workers
    # unless source_sync is off (then `embedsearch sources run` does); rows per batch; how
    # often an empty change queue is looked at again.
    source_sync: bool = True
    source_batch_rows: int = Field(default=256, ge=1, le=10_000)
    source_poll_s: float = Field(default=0.5, gt=0, le=60)
    # Model migrations: `embedsearch serve` carries them on in the background unless this is
    # off (then `embedsearch migrate` does, in the foreground); chunks per batch.
    migration_worker: bool = True
    migration_batch_rows: int = Field(default=128, ge=1, le=10_000)
    # After a switch, writes that still reach the old collection are applied to the new one
    # for this long (requests that looked the name up just before the switch).
    migration_forward_s: float = Field(default=15.0, ge=0, le=3600)

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
    def replica_urls(self) -> list[str]:
        """The read replicas' URLs (empty when none is configured). Checked here, when the
        store opens, not by a validator: pydantic's errors would quote the value."""
        if self.read_database_urls is None:
            return []
        return split_database_urls(self.read_database_urls.get_secret_value())

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

"""Defaults and bounds named once: the API schemas, the settings, the CLI and the use cases
refer to these."""

from __future__ import annotations

# The brief's collection and table: what a request without `collection` uses.
DEFAULT_COLLECTION = "default"
DEFAULT_TABLE = "chunk_embeddings"
DEFAULT_EMBEDDER = "local:all-MiniLM-L6-v2"

# Identifiers.
MAX_CHUNK_ID_CHARS = 255  # the brief's VARCHAR(255)
MAX_DOCUMENT_ID_CHARS = 200  # leaves room for "#<chunk index>" within a 255-char chunkId
COLLECTION_NAME_PATTERN = r"[a-z][a-z0-9_]{0,39}"  # part of a table name: nothing to escape

# Sharding on Citus: shards per collection (Citus itself allows up to 64,000).
MAX_SHARDS = 1024

# Search.
DEFAULT_LIMIT = 5
MAX_LIMIT = 1000
DEFAULT_RRF_K = 60
MAX_RRF_K = 1000
DEFAULT_MMR_LAMBDA = 0.5
DEFAULT_MMR_FETCH_K = 20
# Ours: ANN recall@10 >= 0.98 against exact search at 100k chunks with pgvector's default
# m=16, ef_construction=64, p50 ~2.7 ms (40 gave 0.92, 100 gave 0.97; benchmarks/search.py).
DEFAULT_EF_SEARCH = 200
HNSW_MAX_EF_SEARCH = 1000  # pgvector's upper bound for hnsw.ef_search
# Index builds: pgvector's defaults, and the bounds we accept.
DEFAULT_HNSW_M = 16
HNSW_M_RANGE = (2, 100)
DEFAULT_HNSW_EF_CONSTRUCTION = 64
HNSW_EF_CONSTRUCTION_RANGE = (4, 1000)
IVFFLAT_LISTS_RANGE = (1, 32768)
# Lexical search: the text search configuration (Snowball stemming, stop words) by default.
DEFAULT_TEXT_CONFIG = "english"
TEXT_CONFIG_PATTERN = r"[a-z_][a-z0-9_]{0,62}"
# Hybrid search: length of the dense and lexical lists it fuses (at least 4x the limit), and
# how it fuses them by default.
HYBRID_CANDIDATES = 100
DEFAULT_FUSION = "convex"
DEFAULT_CONVEX_ALPHA = 0.5  # weight of the dense scores

# Request limits (each also a setting).
DEFAULT_MAX_TEXT_CHARS = 100_000
DEFAULT_MAX_BATCH_ITEMS = 1000
DEFAULT_MAX_DOCUMENT_CHARS = 10_000_000
DEFAULT_MAX_BODY_BYTES = 32 * 2**20  # enforced while the body is read, before it is parsed
DEFAULT_MAX_METADATA_BYTES = 64 * 2**10  # a chunk's or document's metadata, as JSON
DEFAULT_MAX_JSON_DEPTH = 32  # nesting of metadata values and of filters
DEFAULT_MAX_QUEUED_TEXTS = 4096  # texts waiting for the model before requests get 429
DEFAULT_WRITE_RETRIES = 3  # a deadlock or serialization failure is retried this many times
DEFAULT_DEFER_INDEX_MIN_DOCUMENTS = 1000
DEFAULT_INDEX_BUILD_MEMORY_MB = 1024

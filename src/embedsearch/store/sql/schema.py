"""Schema versions: the version table, the lock that serializes migrations, each version's DDL."""

from __future__ import annotations

from psycopg import sql

# Serializes schema changes between processes (server and CLI starting at once). Collection
# DDL takes it for its transaction; a migration holds it for the session, from before its
# transaction begins (see store.migrations._apply).
MIGRATION_LOCK_ID = 7_214_530_001
LOCK_MIGRATIONS = sql.SQL("SELECT pg_advisory_xact_lock(%s)")
LOCK_MIGRATIONS_SESSION = sql.SQL("SELECT pg_advisory_lock(%s)")
UNLOCK_MIGRATIONS_SESSION = sql.SQL("SELECT pg_advisory_unlock(%s)")

# One row per applied migration; the schema version is the largest.
VERSION_TABLE_EXISTS = sql.SQL("SELECT to_regclass('embedsearch_schema') IS NOT NULL")
SCHEMA_VERSION = sql.SQL("SELECT coalesce(max(version), 0) FROM embedsearch_schema")
CREATE_VERSION_TABLE = sql.SQL("""
CREATE TABLE IF NOT EXISTS embedsearch_schema (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
)""")
RECORD_VERSION = sql.SQL("INSERT INTO embedsearch_schema (version, description) VALUES (%s, %s)")

CREATE_EXTENSION = sql.SQL("CREATE EXTENSION IF NOT EXISTS vector")
EXTENSION_VERSION = sql.SQL("SELECT extversion FROM pg_extension WHERE extname = 'vector'")

# Version 1: the registry and documents as e9b6e60 and earlier wrote them. Idempotent, so it
# also completes the layouts of releases before it (columns added one by one).
V1_REGISTRY_AND_DOCUMENTS = sql.SQL("""
CREATE TABLE IF NOT EXISTS embedsearch_collections (
    name        TEXT PRIMARY KEY,
    table_name  TEXT NOT NULL UNIQUE,
    model       TEXT NOT NULL,
    dimensions  INTEGER NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
ALTER TABLE embedsearch_collections
    ADD COLUMN IF NOT EXISTS embedder TEXT,
    ADD COLUMN IF NOT EXISTS distance TEXT NOT NULL DEFAULT 'cosine',
    ADD COLUMN IF NOT EXISTS storage TEXT NOT NULL DEFAULT 'vector',
    -- false: vectors are stored as the model gives them, and the index follows `distance`.
    ADD COLUMN IF NOT EXISTS normalized BOOLEAN NOT NULL DEFAULT true,
    -- IVFFlat: lists scanned per query by default, and the row count its lists were trained on.
    ADD COLUMN IF NOT EXISTS probes INTEGER,
    ADD COLUMN IF NOT EXISTS index_rows BIGINT,
    ADD COLUMN IF NOT EXISTS index_built_at TIMESTAMPTZ,
    -- A bulk load dropped the index to build it once at the end; what to rebuild.
    ADD COLUMN IF NOT EXISTS deferred_index JSONB;
CREATE TABLE IF NOT EXISTS embedsearch_documents (
    collection   TEXT NOT NULL REFERENCES embedsearch_collections (name) ON DELETE CASCADE,
    document_id  TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    metadata     JSONB NOT NULL DEFAULT '{}',
    chunk_count  INTEGER NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (collection, document_id)
)""")

# Version 6: other names for collections. The foreign key keeps an alias from outliving its
# collection (dropping a collection that aliases name is refused; store/registry.py says so).
V6_ALIASES = sql.SQL("""
CREATE TABLE IF NOT EXISTS embedsearch_aliases (
    name       TEXT PRIMARY KEY,
    collection TEXT NOT NULL REFERENCES embedsearch_collections (name),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS embedsearch_aliases_collection ON embedsearch_aliases (collection)""")

# Registered collections whose chunk table exists.
REGISTERED_COLLECTIONS = sql.SQL(
    "SELECT table_name, name FROM embedsearch_collections"
    " WHERE to_regclass(quote_ident(table_name)) IS NOT NULL ORDER BY table_name"
)

# The same, with each one's text search configuration (version 3 and later).
REGISTERED_TEXT_CONFIGS = sql.SQL(
    "SELECT table_name, name, text_config FROM embedsearch_collections"
    " WHERE to_regclass(quote_ident(table_name)) IS NOT NULL ORDER BY table_name"
)


def v1_complete_chunk_table(table: str) -> sql.Composed:
    """Version 1's columns and indexes of a chunk table (idempotent)."""
    return sql.SQL("""
ALTER TABLE {table}
    ADD COLUMN IF NOT EXISTS updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS content      TEXT,
    ADD COLUMN IF NOT EXISTS content_hash TEXT,
    ADD COLUMN IF NOT EXISTS metadata     JSONB NOT NULL DEFAULT '{{}}',
    ADD COLUMN IF NOT EXISTS document_id  TEXT,
    ADD COLUMN IF NOT EXISTS content_tsv  tsvector
        GENERATED ALWAYS AS (to_tsvector('english', coalesce(content, ''))) STORED;
CREATE INDEX IF NOT EXISTS {doc_index} ON {table} (document_id);
CREATE INDEX IF NOT EXISTS {meta_index} ON {table} USING gin (metadata jsonb_path_ops);
CREATE INDEX IF NOT EXISTS {text_index} ON {table} USING gin (content_tsv)""").format(
        table=sql.Identifier(table),
        doc_index=sql.Identifier(f"{table}_document_id"),
        meta_index=sql.Identifier(f"{table}_metadata"),
        text_index=sql.Identifier(f"{table}_content_tsv"),
    )


# Version 2: the registry is the only source of a collection's layout, so it refuses values the
# code cannot read back. A row that breaks one fails the migration, which then rolls back.
V2_REGISTRY_CHECKS = sql.SQL("""
ALTER TABLE embedsearch_collections
    ADD CONSTRAINT embedsearch_collections_dimensions_check CHECK (dimensions > 0),
    ADD CONSTRAINT embedsearch_collections_distance_check
        CHECK (distance IN ('cosine', 'l2', 'inner_product')),
    ADD CONSTRAINT embedsearch_collections_storage_check CHECK (storage IN ('vector', 'halfvec'))""")


# Version 3: lexical search ranked by BM25 (see sql/bm25.py for the tables and triggers).
V3_REGISTRY_TEXT_OPTIONS = sql.SQL("""
ALTER TABLE embedsearch_collections
    ADD COLUMN IF NOT EXISTS text_config TEXT NOT NULL DEFAULT 'english',
    -- Hybrid search's default fusion for this collection, e.g. {"method": "convex", "alpha": 0.6}.
    ADD COLUMN IF NOT EXISTS fusion JSONB""")


def alter_system(name: str, value: str) -> sql.Composed:
    return sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value))


def v4_vectors_inline(table: str) -> sql.Composed:
    """pgvector's types default to EXTERNAL storage: once a row passes ~2 kB (a 384-d vector
    is 1.5 kB, plus its text and tsvector) the vector moves to TOAST and every read of it costs
    extra page reads (a search over 2,000 chunks: 16 ms instead of 2). MAIN keeps it in the
    row, moving it out only when the row would not fit a page. Applies to rows written from
    now on (catalog only; VACUUM FULL moves existing ones)."""
    return sql.SQL("ALTER TABLE {} ALTER COLUMN embedding SET STORAGE MAIN").format(
        sql.Identifier(table)
    )


# Version 8: a collection's chunk table may be hash-distributed by Citus
# into this many shards; NULL is a plain table.
V8_REGISTRY_SHARDS = sql.SQL("""
ALTER TABLE embedsearch_collections
    ADD COLUMN IF NOT EXISTS shards INTEGER
        CONSTRAINT embedsearch_collections_shards_check CHECK (shards > 0)""")

TOASTED_VECTORS = sql.SQL(
    "SELECT c.reltoastrelid <> 0 AND pg_relation_size(c.reltoastrelid) > 8192"
    " FROM pg_class c WHERE c.oid = to_regclass(quote_ident(%s))"
)

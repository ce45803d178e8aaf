"""Every SQL statement of the project. Identifiers go through sql.Identifier, values are parameters."""

from __future__ import annotations

from psycopg import sql

from embedsearch.distance import Distance

# pgvector's HNSW and IVFFlat indexes take `vector` columns of at most this many dimensions.
MAX_INDEXED_DIMENSIONS = 2000
# Serializes schema changes between processes (server and CLI starting at once).
MIGRATION_LOCK_ID = 7_214_530_001

CREATE_EXTENSION = sql.SQL("CREATE EXTENSION IF NOT EXISTS vector")
EXTENSION_VERSION = sql.SQL("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
LOCK_MIGRATIONS = sql.SQL("SELECT pg_advisory_xact_lock(%s)")
PING = sql.SQL("SELECT 1")

CREATE_COLLECTIONS = sql.SQL("""
CREATE TABLE IF NOT EXISTS embedsearch_collections (
    name        TEXT PRIMARY KEY,
    table_name  TEXT NOT NULL UNIQUE,
    model       TEXT NOT NULL,
    dimensions  INTEGER NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
)""")
GET_COLLECTION = sql.SQL(
    "SELECT table_name, model, dimensions FROM embedsearch_collections WHERE name = %s"
)
REGISTER_COLLECTION = sql.SQL(
    "INSERT INTO embedsearch_collections (name, table_name, model, dimensions)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO NOTHING"
)
# The declared dimension of an existing vector column (atttypmod holds it), or no row.
VECTOR_COLUMN_DIMENSIONS = sql.SQL("""
SELECT a.atttypmod FROM pg_attribute a
WHERE a.attrelid = to_regclass(%s) AND a.attname = 'embedding' AND NOT a.attisdropped""")


def alter_system(name: str, value: str) -> sql.Composed:
    return sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value))


def create_chunk_table(table: str, dimensions: int) -> sql.Composed:
    """The brief's chunk_embeddings table, plus what a real system needs."""
    return sql.SQL("""
CREATE TABLE IF NOT EXISTS {table} (
    chunk_id     VARCHAR(255) PRIMARY KEY,
    embedding    VECTOR({dims}) NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    model_name   VARCHAR(100) NOT NULL,
    content      TEXT,
    content_hash TEXT,
    metadata     JSONB NOT NULL DEFAULT '{{}}'
)""").format(table=sql.Identifier(table), dims=sql.Literal(dimensions))


def upgrade_chunk_table(table: str) -> sql.Composed:
    """Add our columns to a table made by the brief's original code (idempotent)."""
    return sql.SQL("""
ALTER TABLE {table}
    ADD COLUMN IF NOT EXISTS updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS content      TEXT,
    ADD COLUMN IF NOT EXISTS content_hash TEXT,
    ADD COLUMN IF NOT EXISTS metadata     JSONB NOT NULL DEFAULT '{{}}'""").format(
        table=sql.Identifier(table)
    )


def other_models(table: str) -> sql.Composed:
    return sql.SQL("SELECT DISTINCT model_name FROM {} WHERE model_name <> %s LIMIT 5").format(
        sql.Identifier(table)
    )


def create_hnsw_index(table: str) -> sql.Composed:
    # One cosine index orders all three metrics: every stored vector is unit length.
    return sql.SQL(
        "CREATE INDEX IF NOT EXISTS {index} ON {table} USING hnsw (embedding vector_cosine_ops)"
    ).format(index=sql.Identifier(f"{table}_embedding_hnsw"), table=sql.Identifier(table))


_COLUMNS = ("chunk_id", "embedding", "model_name", "content", "content_hash", "metadata")
# psycopg type names for binary COPY of _COLUMNS.
COPY_TYPES = ("varchar", "vector", "varchar", "text", "text", "jsonb")


_UPSERT_TAIL = sql.SQL("""
ON CONFLICT (chunk_id) DO UPDATE SET
    embedding = EXCLUDED.embedding,
    model_name = EXCLUDED.model_name,
    content = EXCLUDED.content,
    content_hash = EXCLUDED.content_hash,
    metadata = EXCLUDED.metadata,
    updated_at = now()
RETURNING chunk_id, (xmax = 0) AS inserted""")


def upsert_row(table: str) -> sql.Composed:
    return sql.SQL("INSERT INTO {table} ({cols}) VALUES ({params}) {tail}").format(
        table=sql.Identifier(table),
        cols=sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)),
        params=sql.SQL(", ").join(sql.Placeholder() * len(_COLUMNS)),
        tail=_UPSERT_TAIL,
    )


def create_staging(table: str) -> sql.Composed:
    return sql.SQL(
        "CREATE TEMP TABLE {staging} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
    ).format(staging=sql.Identifier(f"staging_{table}"), table=sql.Identifier(table))


def copy_into_staging(table: str) -> sql.Composed:
    return sql.SQL("COPY {staging} ({cols}) FROM STDIN WITH (FORMAT BINARY)").format(
        staging=sql.Identifier(f"staging_{table}"),
        cols=sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)),
    )


def upsert_from_staging(table: str) -> sql.Composed:
    cols = sql.SQL(", ").join(map(sql.Identifier, _COLUMNS))
    return sql.SQL("INSERT INTO {table} ({cols}) SELECT {cols} FROM {staging} {tail}").format(
        table=sql.Identifier(table),
        cols=cols,
        staging=sql.Identifier(f"staging_{table}"),
        tail=_UPSERT_TAIL,
    )


SET_EF_SEARCH = sql.SQL("SELECT set_config('hnsw.ef_search', %s, true)")


def search(table: str, distance: Distance) -> sql.Composed:
    """Nearest chunks: ordered through the cosine index, scored with the requested distance."""
    return sql.SQL("""
SELECT chunk_id, embedding {op} %(query)s AS score, content, metadata
FROM {table}
ORDER BY embedding <=> %(query)s
LIMIT %(limit)s""").format(op=sql.SQL(distance.operator), table=sql.Identifier(table))


def count_rows(table: str) -> sql.Composed:
    return sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))

"""Every SQL statement of the project. Identifiers go through sql.Identifier, values are parameters."""

from __future__ import annotations

from psycopg import sql

from embedsearch.distance import Distance
from embedsearch.vector_index import IndexSpec, IndexType, Storage

# Serializes schema changes between processes (server and CLI starting at once).
MIGRATION_LOCK_ID = 7_214_530_001

CREATE_EXTENSION = sql.SQL("CREATE EXTENSION IF NOT EXISTS vector")
EXTENSION_VERSION = sql.SQL("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
LOCK_MIGRATIONS = sql.SQL("SELECT pg_advisory_xact_lock(%s)")

# The registry: one row per collection, recording the model that fills it.
CREATE_COLLECTIONS = sql.SQL("""
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
_COLLECTION_COLUMNS = (
    "SELECT name, table_name, model, dimensions, embedder, distance, created_at, storage,"
    " normalized, probes, index_rows, index_built_at, deferred_index FROM embedsearch_collections"
)
GET_COLLECTION = sql.SQL(_COLLECTION_COLUMNS + " WHERE name = %s")
LIST_COLLECTIONS = sql.SQL(_COLLECTION_COLUMNS + " ORDER BY name")
REGISTER_COLLECTION = sql.SQL(
    "INSERT INTO embedsearch_collections"
    " (name, table_name, model, dimensions, embedder, distance, storage, normalized)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING RETURNING name"
)
RECORD_INDEX_BUILD = sql.SQL(
    "UPDATE embedsearch_collections SET probes = %s, index_rows = %s, index_built_at = now(),"
    " deferred_index = NULL WHERE name = %s"
)
DEFER_INDEX = sql.SQL("UPDATE embedsearch_collections SET deferred_index = %s WHERE name = %s")
FILL_EMBEDDER = sql.SQL(
    "UPDATE embedsearch_collections SET embedder = %s WHERE name = %s AND embedder IS NULL"
)
UNREGISTER_COLLECTION = sql.SQL("DELETE FROM embedsearch_collections WHERE name = %s")
# The declared dimension of an existing vector column (atttypmod holds it), or no row.
VECTOR_COLUMN_DIMENSIONS = sql.SQL("""
SELECT a.atttypmod FROM pg_attribute a
WHERE a.attrelid = to_regclass(%s) AND a.attname = 'embedding' AND NOT a.attisdropped""")


def alter_system(name: str, value: str) -> sql.Composed:
    return sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value))


def create_chunk_table(table: str, dimensions: int, storage: Storage) -> sql.Composed:
    """The brief's chunk_embeddings table, plus what a real system needs."""
    return sql.SQL("""
CREATE TABLE IF NOT EXISTS {table} (
    chunk_id     VARCHAR(255) PRIMARY KEY,
    embedding    {storage}({dims}) NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    model_name   VARCHAR(100) NOT NULL,
    content      TEXT,
    content_hash TEXT,
    metadata     JSONB NOT NULL DEFAULT '{{}}',
    document_id  TEXT
)""").format(table=sql.Identifier(table), dims=sql.Literal(dimensions), storage=sql.SQL(storage))


def upgrade_chunk_table(table: str) -> sql.Composed:
    """Add our columns and indexes to a chunk table (idempotent; also for the brief's table)."""
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


def other_models(table: str) -> sql.Composed:
    return sql.SQL("SELECT DISTINCT model_name FROM {} WHERE model_name <> %s LIMIT 5").format(
        sql.Identifier(table)
    )


def create_vector_index(
    index: str, table: str, opclass: str, spec: IndexSpec, *, concurrently: bool = False
) -> sql.Composed:
    """An HNSW or IVFFlat index (DDL takes no parameters: the integers are validated
    IndexSpec fields, and spec.lists is set for IVFFlat by the caller)."""
    if spec.type is IndexType.HNSW:
        options = sql.SQL("m = {}, ef_construction = {}").format(
            sql.Literal(spec.m), sql.Literal(spec.ef_construction)
        )
    else:
        options = sql.SQL("lists = {}").format(sql.Literal(spec.lists))
    return sql.SQL(
        "CREATE INDEX {concurrently} IF NOT EXISTS {index} ON {table}"
        " USING {method} (embedding {opclass}) WITH ({options})"
    ).format(
        concurrently=sql.SQL("CONCURRENTLY" if concurrently else ""),
        index=sql.Identifier(index),
        table=sql.Identifier(table),
        method=sql.SQL(spec.type.value),
        opclass=sql.Identifier(opclass),
        options=options,
    )


def drop_index(index: str, *, concurrently: bool = False) -> sql.Composed:
    return sql.SQL("DROP INDEX {} IF EXISTS {}").format(
        sql.SQL("CONCURRENTLY" if concurrently else ""), sql.Identifier(index)
    )


def rename_index(index: str, new_name: str) -> sql.Composed:
    return sql.SQL("ALTER INDEX {} RENAME TO {}").format(
        sql.Identifier(index), sql.Identifier(new_name)
    )


# The ANN indexes on a table's embedding column, with their options and size.
VECTOR_INDEXES = sql.SQL("""
SELECT i.relname, am.amname, opc.opcname, coalesce(i.reloptions, '{}'),
       pg_relation_size(i.oid), ix.indisvalid
FROM pg_index ix
JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_am am ON am.oid = i.relam
JOIN pg_opclass opc ON opc.oid = ix.indclass[0]
WHERE ix.indrelid = to_regclass(%s) AND am.amname IN ('hnsw', 'ivfflat')
ORDER BY i.relname""")
SHARED_BUFFERS = sql.SQL("SELECT pg_size_bytes(current_setting('shared_buffers'))")
TABLE_SIZE = sql.SQL("SELECT pg_table_size(to_regclass(%s))")
# Live progress of a CREATE INDEX on a table, as PostgreSQL reports it.
INDEX_BUILD_PROGRESS = sql.SQL("""
SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total
FROM pg_stat_progress_create_index WHERE relid = to_regclass(%s)""")
TRY_LOCK_INDEX_BUILD_XACT = sql.SQL(
    "SELECT pg_try_advisory_xact_lock(hashtextextended('index/' || %s, 7))"
)
# Session-level: held by the build's own connection, released when it closes.
TRY_LOCK_INDEX_BUILD = sql.SQL("SELECT pg_try_advisory_lock(hashtextextended('index/' || %s, 7))")
SET_MAINTENANCE_WORK_MEM = sql.SQL("SELECT set_config('maintenance_work_mem', %s, false)")


def drop_table(table: str) -> sql.Composed:
    return sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table))


_COLUMNS = (
    "chunk_id",
    "embedding",
    "model_name",
    "content",
    "content_hash",
    "metadata",
    "document_id",
)


# psycopg type names for binary COPY of _COLUMNS.
def copy_types(storage: Storage) -> list[str]:
    return ["varchar", storage.value, "varchar", "text", "text", "jsonb", "text"]


_UPSERT_TAIL = sql.SQL("""
ON CONFLICT (chunk_id) DO UPDATE SET
    embedding = EXCLUDED.embedding,
    model_name = EXCLUDED.model_name,
    content = EXCLUDED.content,
    content_hash = EXCLUDED.content_hash,
    metadata = EXCLUDED.metadata,
    document_id = EXCLUDED.document_id,
    updated_at = now()
RETURNING chunk_id, (xmax = 0) AS inserted""")


def _column_list() -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, _COLUMNS))


def upsert_row(table: str) -> sql.Composed:
    return sql.SQL("INSERT INTO {table} ({cols}) VALUES ({params}) {tail}").format(
        table=sql.Identifier(table),
        cols=_column_list(),
        params=sql.SQL(", ").join(sql.Placeholder() * len(_COLUMNS)),
        tail=_UPSERT_TAIL,
    )


def _staging(table: str) -> sql.Identifier:
    return sql.Identifier(f"staging_{table}")


def create_staging(table: str) -> sql.Composed:
    return sql.SQL(
        "CREATE TEMP TABLE {staging} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
    ).format(staging=_staging(table), table=sql.Identifier(table))


def copy_into_staging(table: str) -> sql.Composed:
    return sql.SQL("COPY {staging} ({cols}) FROM STDIN WITH (FORMAT BINARY)").format(
        staging=_staging(table), cols=_column_list()
    )


def upsert_from_staging(table: str) -> sql.Composed:
    return sql.SQL("INSERT INTO {table} ({cols}) SELECT {cols} FROM {staging} {tail}").format(
        table=sql.Identifier(table), cols=_column_list(), staging=_staging(table), tail=_UPSERT_TAIL
    )


SET_EF_SEARCH = sql.SQL("SELECT set_config('hnsw.ef_search', %s, true)")
SET_PROBES = sql.SQL("SELECT set_config('ivfflat.probes', %s, true)")
# pgvector >= 0.8: keep scanning the index until `limit` rows pass the filter.
SET_ITERATIVE_SCAN = sql.SQL(
    "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),"
    " set_config('ivfflat.iterative_scan', 'relaxed_order', true)"
)


def _query_vector(storage: Storage) -> sql.Composed:
    # The query arrives as `vector`; halfvec columns compare only with halfvec.
    return sql.SQL("CAST(%(query)s AS {})").format(sql.SQL(storage.value))


def search(
    table: str,
    distance: Distance,
    condition: sql.Composable,
    *,
    order_by: Distance,
    storage: Storage,
) -> sql.Composed:
    """Nearest chunks, ordered by `order_by` (the operator the index serves, or the requested
    one for an exact scan) and scored with the requested distance. The outer ORDER BY
    restores exact order after a relaxed iterative scan."""
    return sql.SQL("""
WITH nearest AS MATERIALIZED (
    SELECT chunk_id, embedding {op} {query} AS score, embedding {order} {query} AS rank_by,
           content, metadata, document_id
    FROM {table}
    WHERE {condition}
    ORDER BY embedding {order} {query}
    LIMIT %(limit)s
)
SELECT chunk_id, score, content, metadata, document_id FROM nearest ORDER BY rank_by""").format(
        op=sql.SQL(distance.operator),
        order=sql.SQL(order_by.operator),
        query=_query_vector(storage),
        table=sql.Identifier(table),
        condition=condition,
    )


# For exact search: no index scans in this transaction (bitmap scans for filters stay).
DISABLE_INDEX_SCANS = sql.SQL("SELECT set_config('enable_indexscan', 'off', true)")


# The full-text query. Plain words match ANY of them, as search engines do (ranking rewards
# chunks holding more of them): requiring every word found nothing for 283 of SciFact's 300
# questions. A query using websearch syntax for "phrases" or -exclusions keeps its strict
# meaning. Stop words alone give an empty query, which matches nothing.
_TSQUERY = sql.SQL(r"""(
    SELECT CASE
        WHEN %(text)s ~ '"|(^|\s)-\S' THEN websearch_to_tsquery('english', %(text)s)
        ELSE (
            SELECT coalesce(string_agg(quote_literal(lexeme), ' | '), '')::tsquery
            FROM unnest(tsvector_to_array(to_tsvector('english', %(text)s))) AS lexeme
        )
    END
) AS query (q)""")


def lexical_search(table: str, condition: sql.Composable) -> sql.Composed:
    """Full-text search: any of the words, or websearch syntax ("quoted phrases",
    -exclusions, or), ranked by ts_rank normalized by document length (larger is better;
    on SciFact it beat ts_rank_cd by +0.17 nDCG@10 with any-word queries)."""
    return sql.SQL("""
SELECT chunk_id, ts_rank(content_tsv, q, 1) AS score, content, metadata, document_id
FROM {table}, {tsquery}
WHERE content_tsv @@ q AND {condition}
ORDER BY score DESC, chunk_id
LIMIT %(limit)s""").format(table=sql.Identifier(table), condition=condition, tsquery=_TSQUERY)


def hybrid_search(
    table: str, condition: sql.Composable, *, order_by: Distance, storage: Storage
) -> sql.Composed:
    """Reciprocal Rank Fusion of the dense (cosine index) and lexical top-k lists, in one
    round trip: score = sum over lists of 1 / (rrf_k + rank); larger is better."""
    return sql.SQL("""
WITH dense AS MATERIALIZED (
    SELECT chunk_id, row_number() OVER (ORDER BY distance) AS rank
    FROM (
        SELECT chunk_id, embedding {order} {query} AS distance FROM {table}
        WHERE {condition} ORDER BY embedding {order} {query} LIMIT %(k)s
    ) AS nearest
), lexical AS MATERIALIZED (
    SELECT chunk_id, row_number() OVER (ORDER BY text_rank DESC, chunk_id) AS rank
    FROM (
        SELECT chunk_id, ts_rank(content_tsv, q, 1) AS text_rank
        FROM {table}, {tsquery}
        WHERE content_tsv @@ q AND {condition}
        ORDER BY text_rank DESC, chunk_id LIMIT %(k)s
    ) AS matched
), fused AS (
    SELECT chunk_id, sum(1.0 / (%(rrf_k)s + rank)) AS score
    FROM (SELECT * FROM dense UNION ALL SELECT * FROM lexical) AS ranks
    GROUP BY chunk_id
)
SELECT c.chunk_id, f.score, c.content, c.metadata, c.document_id
FROM fused AS f JOIN {table} AS c USING (chunk_id)
ORDER BY f.score DESC, c.chunk_id
LIMIT %(limit)s""").format(
        table=sql.Identifier(table),
        condition=condition,
        order=sql.SQL(order_by.operator),
        query=_query_vector(storage),
        tsquery=_TSQUERY,
    )


def chunk_vectors(table: str) -> sql.Composed:
    return sql.SQL("SELECT chunk_id, embedding FROM {} WHERE chunk_id = ANY(%s)").format(
        sql.Identifier(table)
    )


def sample_vectors(table: str) -> sql.Composed:
    return sql.SQL("SELECT embedding FROM {} TABLESAMPLE BERNOULLI (%s) LIMIT %s").format(
        sql.Identifier(table)
    )


def is_empty(table: str) -> sql.Composed:
    return sql.SQL("SELECT NOT EXISTS (SELECT FROM {})").format(sql.Identifier(table))


def count_rows(table: str) -> sql.Composed:
    return sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))


def get_chunk(table: str) -> sql.Composed:
    return sql.SQL(
        "SELECT chunk_id, content, metadata, model_name, document_id, created_at, updated_at,"
        " vector_dims(embedding) FROM {} WHERE chunk_id = %s"
    ).format(sql.Identifier(table))


def delete_chunk(table: str) -> sql.Composed:
    return sql.SQL("DELETE FROM {} WHERE chunk_id = %s RETURNING document_id").format(
        sql.Identifier(table)
    )


# Documents.
def chunk_hashes_of_documents(table: str, *, for_update: bool = False) -> sql.Composed:
    return sql.SQL("SELECT chunk_id, content_hash FROM {} WHERE document_id = ANY(%s) {}").format(
        sql.Identifier(table), sql.SQL("FOR UPDATE" if for_update else "")
    )


def delete_document_chunks_except(table: str) -> sql.Composed:
    return sql.SQL("DELETE FROM {} WHERE document_id = %s AND chunk_id <> ALL(%s)").format(
        sql.Identifier(table)
    )


def update_chunk_metadata(table: str) -> sql.Composed:
    return sql.SQL(
        "UPDATE {} SET metadata = %s, updated_at = now()"
        " WHERE chunk_id = ANY(%s) AND metadata IS DISTINCT FROM %s"
    ).format(sql.Identifier(table))


def document_chunks(table: str) -> sql.Composed:
    return sql.SQL(
        "SELECT chunk_id FROM {} WHERE document_id = %s ORDER BY length(chunk_id), chunk_id"
    ).format(sql.Identifier(table))


def delete_document_chunks(table: str) -> sql.Composed:
    return sql.SQL("DELETE FROM {} WHERE document_id = %s").format(sql.Identifier(table))


LOCK_DOCUMENT = sql.SQL("SELECT pg_advisory_xact_lock(hashtextextended(%s || '/' || %s, 7))")
DOCUMENT_STATES = sql.SQL(
    "SELECT document_id, content_hash, metadata FROM embedsearch_documents"
    " WHERE collection = %s AND document_id = ANY(%s)"
)
UPSERT_DOCUMENT = sql.SQL("""
INSERT INTO embedsearch_documents (collection, document_id, content_hash, metadata, chunk_count)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (collection, document_id) DO UPDATE SET
    content_hash = EXCLUDED.content_hash,
    metadata = EXCLUDED.metadata,
    chunk_count = EXCLUDED.chunk_count,
    updated_at = now()
RETURNING (xmax = 0) AS inserted""")
GET_DOCUMENT = sql.SQL(
    "SELECT document_id, content_hash, metadata, chunk_count, created_at, updated_at"
    " FROM embedsearch_documents WHERE collection = %s AND document_id = %s"
)
DELETE_DOCUMENT = sql.SQL(
    "DELETE FROM embedsearch_documents WHERE collection = %s AND document_id = %s RETURNING 1"
)
DECREMENT_DOCUMENT_CHUNKS = sql.SQL(
    "UPDATE embedsearch_documents SET chunk_count = chunk_count - 1, updated_at = now()"
    " WHERE collection = %s AND document_id = %s"
)

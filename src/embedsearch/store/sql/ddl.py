"""Chunk tables and their ANN indexes. DDL takes no parameters: identifiers go through
sql.Identifier, and the integers are validated fields."""

from __future__ import annotations

from psycopg import sql

from embedsearch.core.vector_index import IndexSpec, IndexType, Storage


def create_chunk_table(
    table: str, dimensions: int, storage: Storage, text_config: str, *, distributed: bool = False
) -> sql.Composed:
    """The brief's chunk_embeddings table, plus what a real system needs. The text search
    configuration is a validated name (a literal: DDL takes no parameters). `distributed`: the
    form Citus can hash-distribute (see `_DISTRIBUTED_KEY`)."""
    return sql.SQL("""
CREATE TABLE IF NOT EXISTS {table} (
    chunk_id     VARCHAR(255) {chunk_key},
    embedding    {storage}({dims}) NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    model_name   VARCHAR(100) NOT NULL,
    content      TEXT,
    content_hash TEXT,
    metadata     JSONB NOT NULL DEFAULT '{{}}',
    document_id  TEXT,
    content_tsv  tsvector
        GENERATED ALWAYS AS (to_tsvector({config}::regconfig, coalesce(content, ''))) STORED,
    bm25_length  INTEGER{distributed}
)""").format(
        table=sql.Identifier(table),
        chunk_key=sql.SQL("NOT NULL" if distributed else "PRIMARY KEY"),
        dims=sql.Literal(dimensions),
        storage=sql.SQL(storage),
        config=sql.Literal(text_config),
        distributed=_DISTRIBUTED_KEY.format(config=sql.Literal(text_config))
        if distributed
        else sql.SQL(""),
    )


# Citus distributes by a column that every unique constraint includes, and not by a generated
# one. shard_key is the chunk id without a trailing "#<n>": a document's chunks
# (`documentId#0..n`) share their document id and so a shard; any other chunk keys by its own
# id. Being a function of chunk_id (the CHECK holds the writer to it), (shard_key, chunk_id)
# is unique exactly when chunk_id is, so upserts by chunk id keep their meaning. No trigger
# can fill bm25_length on shards: it is generated (the function is on every node).
_DISTRIBUTED_KEY = sql.SQL("""
        GENERATED ALWAYS AS (embedsearch_tsvector_length(
            to_tsvector({config}::regconfig, coalesce(content, '')))) STORED,
    shard_key    TEXT NOT NULL CHECK (shard_key = regexp_replace(chunk_id, '#[0-9]+$', '')),
    PRIMARY KEY (shard_key, chunk_id)""")


def complete_chunk_table(table: str, text_config: str) -> sql.Composed:
    """Add our columns and indexes to a chunk table made by other code (the brief's script),
    or check that ours has them (idempotent)."""
    return sql.SQL("""
ALTER TABLE {table}
    ADD COLUMN IF NOT EXISTS updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS content      TEXT,
    ADD COLUMN IF NOT EXISTS content_hash TEXT,
    ADD COLUMN IF NOT EXISTS metadata     JSONB NOT NULL DEFAULT '{{}}',
    ADD COLUMN IF NOT EXISTS document_id  TEXT,
    ADD COLUMN IF NOT EXISTS content_tsv  tsvector
        GENERATED ALWAYS AS (to_tsvector({config}::regconfig, coalesce(content, ''))) STORED,
    ADD COLUMN IF NOT EXISTS bm25_length  INTEGER,
    -- Kept in the row (compressed) rather than in TOAST: BM25 reads it for every candidate.
    ALTER COLUMN content_tsv SET STORAGE MAIN,
    -- The same for the vector (pgvector's default, EXTERNAL, moves it out past ~2 kB rows):
    -- a search reads it for every row it scores (see sql/schema.py, migration 4).
    ALTER COLUMN embedding SET STORAGE MAIN;
CREATE INDEX IF NOT EXISTS {doc_index} ON {table} (document_id);
CREATE INDEX IF NOT EXISTS {meta_index} ON {table} USING gin (metadata jsonb_path_ops);
CREATE INDEX IF NOT EXISTS {text_index} ON {table} USING gin (content_tsv)""").format(
        table=sql.Identifier(table),
        config=sql.Literal(text_config),
        doc_index=sql.Identifier(f"{table}_document_id"),
        meta_index=sql.Identifier(f"{table}_metadata"),
        text_index=sql.Identifier(f"{table}_content_tsv"),
    )


def create_vector_index(
    index: str, table: str, opclass: str, spec: IndexSpec, *, concurrently: bool = False
) -> sql.Composed:
    """An HNSW or IVFFlat index (spec.lists is set for IVFFlat by the caller)."""
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


def drop_table(table: str) -> sql.Composed:
    return sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table))

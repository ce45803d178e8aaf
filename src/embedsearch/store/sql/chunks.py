"""Chunk writes (a few rows as INSERTs, more through binary COPY into a staging table) and reads.

`distributed`: the forms a table sharded on Citus needs. Its rows carry their shard key, its
upserts conflict on (shard_key, chunk_id), and its writes return what they replaced and wrote
(PostgreSQL 18's RETURNING old/new) for the write path to keep the BM25 statistics (no
triggers there)."""

from __future__ import annotations

from psycopg import sql

from embedsearch.core.vector_index import Storage

_COLUMNS = (
    "chunk_id",
    "embedding",
    "model_name",
    "content",
    "content_hash",
    "metadata",
    "document_id",
)


def _columns(distributed: bool) -> tuple[str, ...]:
    return (*_COLUMNS, "shard_key") if distributed else _COLUMNS


# psycopg type names for binary COPY of the columns.
def copy_types(storage: Storage, *, distributed: bool = False) -> list[str]:
    types = ["varchar", storage.value, "varchar", "text", "text", "jsonb", "text"]
    return [*types, "text"] if distributed else types


# updated_at: the proposed row's default, now() (Citus refuses now() itself in DO UPDATE).
_UPSERT_SET = sql.SQL("""
DO UPDATE SET
    embedding = EXCLUDED.embedding,
    model_name = EXCLUDED.model_name,
    content = EXCLUDED.content,
    content_hash = EXCLUDED.content_hash,
    metadata = EXCLUDED.metadata,
    document_id = EXCLUDED.document_id,
    updated_at = EXCLUDED.updated_at""")
# What a sharded table's write replaced (old: NULL when it inserted) and wrote, for BM25.
_BM25_SIDES = sql.SQL(
    ", old.content_tsv::text, old.bm25_length, new.content_tsv::text, new.bm25_length"
)


def _upsert_tail(distributed: bool) -> sql.Composed:
    return sql.SQL(
        "ON CONFLICT ({key}) {update} RETURNING chunk_id, {inserted} AS inserted{sides}"
    ).format(
        key=sql.SQL("shard_key, chunk_id" if distributed else "chunk_id"),
        update=_UPSERT_SET,
        inserted=sql.SQL("old.chunk_id IS NULL" if distributed else "(xmax = 0)"),
        sides=_BM25_SIDES if distributed else sql.SQL(""),
    )


# A sharded table's deletes return the removed rows' lexemes and lengths, for BM25.
REMOVED = sql.SQL("content_tsv::text, bm25_length")


def _column_list(distributed: bool) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, _columns(distributed)))


def upsert_row(table: str, *, distributed: bool = False) -> sql.Composed:
    return sql.SQL("INSERT INTO {table} ({cols}) VALUES ({params}) {tail}").format(
        table=sql.Identifier(table),
        cols=_column_list(distributed),
        params=sql.SQL(", ").join(sql.Placeholder() * len(_columns(distributed))),
        tail=_upsert_tail(distributed),
    )


def _staging(table: str) -> sql.Identifier:
    return sql.Identifier(f"staging_{table}")


def create_staging(table: str) -> sql.Composed:
    return sql.SQL(
        "CREATE TEMP TABLE {staging} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
    ).format(staging=_staging(table), table=sql.Identifier(table))


def copy_into_staging(table: str, *, distributed: bool = False) -> sql.Composed:
    return sql.SQL("COPY {staging} ({cols}) FROM STDIN WITH (FORMAT BINARY)").format(
        staging=_staging(table), cols=_column_list(distributed)
    )


def upsert_from_staging(table: str, *, distributed: bool = False) -> sql.Composed:
    # ORDER BY: rows are locked in chunk id order (see CollectionHandle.write_rows).
    return sql.SQL(
        "INSERT INTO {table} ({cols}) SELECT {cols} FROM {staging} ORDER BY chunk_id {tail}"
    ).format(
        table=sql.Identifier(table),
        cols=_column_list(distributed),
        staging=_staging(table),
        tail=_upsert_tail(distributed),
    )


def chunk_vectors(table: str) -> sql.Composed:
    return sql.SQL("SELECT chunk_id, embedding FROM {} WHERE chunk_id = ANY(%s)").format(
        sql.Identifier(table)
    )


def count_rows(table: str) -> sql.Composed:
    return sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))


def get_chunk(table: str) -> sql.Composed:
    return sql.SQL(
        "SELECT chunk_id, content, metadata, model_name, document_id, created_at, updated_at,"
        " vector_dims(embedding) FROM {} WHERE chunk_id = %s"
    ).format(sql.Identifier(table))


def delete_chunk(table: str, *, distributed: bool = False) -> sql.Composed:
    return sql.SQL("DELETE FROM {} WHERE chunk_id = %s RETURNING document_id{}").format(
        sql.Identifier(table), sql.SQL(", {}").format(REMOVED) if distributed else sql.SQL("")
    )

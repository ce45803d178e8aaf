"""Chunk writes (a few rows as INSERTs, more through binary COPY into a staging table) and reads."""

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
    # ORDER BY: rows are locked in chunk id order (see CollectionHandle.write_rows).
    return sql.SQL(
        "INSERT INTO {table} ({cols}) SELECT {cols} FROM {staging} ORDER BY chunk_id {tail}"
    ).format(
        table=sql.Identifier(table), cols=_column_list(), staging=_staging(table), tail=_UPSERT_TAIL
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


def delete_chunk(table: str) -> sql.Composed:
    return sql.SQL("DELETE FROM {} WHERE chunk_id = %s RETURNING document_id").format(
        sql.Identifier(table)
    )

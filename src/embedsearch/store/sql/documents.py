"""Documents: their registry rows, and their chunks in the collection's table."""

from __future__ import annotations

from psycopg import sql

from embedsearch.store.sql.chunks import REMOVED


def _returning_removed(distributed: bool) -> sql.Composable:
    return sql.SQL("RETURNING {}").format(REMOVED) if distributed else sql.SQL("")


def chunk_hashes_of_documents(table: str, *, for_update: bool = False) -> sql.Composed:
    return sql.SQL("SELECT chunk_id, content_hash FROM {} WHERE document_id = ANY(%s) {}").format(
        sql.Identifier(table), sql.SQL("FOR UPDATE" if for_update else "")
    )


def chunk_hashes_of_document_locked(table: str) -> sql.Composed:
    """A sharded table: Citus locks rows (FOR UPDATE) only in a statement on one shard, and a
    document's chunks are on the shard of its id (sql/ddl.py)."""
    return sql.SQL(
        "SELECT chunk_id, content_hash FROM {} WHERE shard_key = %s AND document_id = %s FOR UPDATE"
    ).format(sql.Identifier(table))


def delete_document_chunks_except(table: str, *, distributed: bool = False) -> sql.Composed:
    return sql.SQL("DELETE FROM {} WHERE document_id = %s AND chunk_id <> ALL(%s) {}").format(
        sql.Identifier(table), _returning_removed(distributed)
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


def delete_document_chunks(table: str, *, distributed: bool = False) -> sql.Composed:
    return sql.SQL("DELETE FROM {} WHERE document_id = %s {}").format(
        sql.Identifier(table), _returning_removed(distributed)
    )


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

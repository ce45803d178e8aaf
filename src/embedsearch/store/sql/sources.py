"""The source registry in the service database: one row per source, its progress and counters."""

from __future__ import annotations

from psycopg import sql

# Version 7. `url` is a secret (it may hold a password): stored, never returned or logged in
# full. NULL: the service's own database. `collection` is a name as a request gives it (not a
# foreign key), resolved at each batch the way every endpoint resolves one.
V7_SOURCE_REGISTRY = sql.SQL("""
CREATE TABLE embedsearch_sources (
    name             TEXT PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,39}$'),
    url              TEXT,
    table_schema     TEXT NOT NULL,
    table_name       TEXT NOT NULL,
    id_column        TEXT NOT NULL,
    text_columns     TEXT[] NOT NULL CHECK (cardinality(text_columns) > 0),
    metadata_columns TEXT[] NOT NULL DEFAULT '{}',
    row_filter       TEXT,
    collection       TEXT NOT NULL,
    -- backfill: existing rows are read in id order after backfill_cursor; live: the queue.
    phase            TEXT NOT NULL DEFAULT 'backfill' CHECK (phase IN ('backfill', 'live')),
    backfill_cursor  TEXT,
    backfill_done    BIGINT NOT NULL DEFAULT 0,
    backfill_total   BIGINT,
    rows_synced      BIGINT NOT NULL DEFAULT 0,
    rows_deleted     BIGINT NOT NULL DEFAULT 0,
    rows_skipped     BIGINT NOT NULL DEFAULT 0,
    chunks_embedded  BIGINT NOT NULL DEFAULT 0,
    rows_per_second  DOUBLE PRECISION NOT NULL DEFAULT 0,
    embeds_per_second DOUBLE PRECISION NOT NULL DEFAULT 0,
    last_error       TEXT,
    last_error_at    TIMESTAMPTZ,
    last_synced_at   TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
)""")

_COLUMNS = (
    "SELECT name, url, table_schema, table_name, id_column, text_columns, metadata_columns,"
    " row_filter, collection, phase, backfill_cursor, backfill_done, backfill_total,"
    " rows_synced, rows_deleted, rows_skipped, chunks_embedded, rows_per_second,"
    " embeds_per_second, last_error, last_error_at, last_synced_at, created_at"
    " FROM embedsearch_sources"
)
GET_SOURCE = sql.SQL(_COLUMNS + " WHERE name = %s")
LIST_SOURCES = sql.SQL(_COLUMNS + " ORDER BY name")
SOURCE_NAMES = sql.SQL("SELECT name FROM embedsearch_sources ORDER BY name")
REGISTER_SOURCE = sql.SQL(
    "INSERT INTO embedsearch_sources (name, url, table_schema, table_name, id_column,"
    " text_columns, metadata_columns, row_filter, collection, backfill_total)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING RETURNING name"
)
UNREGISTER_SOURCE = sql.SQL("DELETE FROM embedsearch_sources WHERE name = %s RETURNING name")
# After a batch's documents committed: where the backfill is, what was done, and no error.
RECORD_BATCH = sql.SQL("""
UPDATE embedsearch_sources SET
    backfill_cursor = coalesce(%(cursor)s, backfill_cursor),
    backfill_done = backfill_done + %(backfilled)s,
    rows_synced = rows_synced + %(synced)s,
    rows_deleted = rows_deleted + %(deleted)s,
    rows_skipped = rows_skipped + %(skipped)s,
    chunks_embedded = chunks_embedded + %(embedded)s,
    rows_per_second = %(rows_per_second)s,
    embeds_per_second = %(embeds_per_second)s,
    last_error = %(skip_error)s,
    last_error_at = CASE WHEN %(skip_error)s::text IS NULL THEN NULL ELSE now() END,
    last_synced_at = now()
WHERE name = %(name)s""")
FINISH_BACKFILL = sql.SQL("UPDATE embedsearch_sources SET phase = 'live' WHERE name = %s")
RECORD_ERROR = sql.SQL(
    "UPDATE embedsearch_sources SET last_error = %s, last_error_at = now() WHERE name = %s"
)
CLEAR_ERROR = sql.SQL(
    "UPDATE embedsearch_sources SET last_error = NULL, last_error_at = NULL"
    " WHERE name = %s AND last_error IS NOT NULL"
)

# One sync worker per source across processes: a session-level advisory lock on the service
# database, held by the worker's own connection (a killed process's lock goes with it). The
# two-key form keeps these apart from the single-key locks of migrations and documents.
SOURCE_LOCK_CLASS = 7214
TRY_LOCK_SOURCE = sql.SQL("SELECT pg_try_advisory_lock(%s, hashtext(%s))")
ALIVE = sql.SQL("SELECT 1")
WORKER_RUNNING = sql.SQL("""
SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND granted
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND classid = %s AND objid = hashtext(%s)::oid AND objsubid = 2)""")

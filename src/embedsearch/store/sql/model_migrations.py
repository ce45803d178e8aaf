"""Model migrations: a shadow collection filled with another model's vectors while the old one
keeps serving, the chunk changes made meanwhile captured by a trigger, then an alias switch.

The capture is a statement trigger on the old collection's chunk table writing the changed
chunk ids into one queue table (in the writing transaction, so no change is missed whichever
process or path made it). Applying an entry reads the chunk's current row, so entries may be
applied in any order and more than once.
"""

from __future__ import annotations

from psycopg import sql

# Version 9 of the schema. `name` is the name the migration was asked for by (a collection or
# an alias): after the switch it names the new collection. One migration at a time per source
# collection (the partial unique index).
V9_TABLES = sql.SQL("""
CREATE TABLE IF NOT EXISTS embedsearch_model_migrations (
    id              BIGSERIAL PRIMARY KEY,
    name            TEXT NOT NULL,
    source          TEXT NOT NULL,
    target          TEXT NOT NULL,
    embedder        TEXT NOT NULL,
    dimensions      INTEGER,
    state           TEXT NOT NULL DEFAULT 'backfill'
        CHECK (state IN ('backfill', 'ready', 'switched', 'cancelled', 'failed')),
    switch_asked    BOOLEAN NOT NULL DEFAULT false,
    backfill_cursor TEXT NOT NULL DEFAULT '',
    backfill_done   BIGINT NOT NULL DEFAULT 0,
    backfill_total  BIGINT NOT NULL DEFAULT 0,
    applied         BIGINT NOT NULL DEFAULT 0,
    embedded        BIGINT NOT NULL DEFAULT 0,
    -- What to compare the rankings on: {"sample": [queries]} and/or {"judgments": {...}}.
    probe           JSONB,
    comparison      JSONB,
    archived_as     TEXT,
    -- After the switch, writes that reached the old collection anyway (requests that looked
    -- its name up just before) are still captured and applied, for a grace period.
    capturing       BOOLEAN NOT NULL DEFAULT true,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    switched_at     TIMESTAMPTZ
);
CREATE UNIQUE INDEX IF NOT EXISTS embedsearch_model_migrations_active
    ON embedsearch_model_migrations (source) WHERE state IN ('backfill', 'ready');
CREATE TABLE IF NOT EXISTS embedsearch_migration_changes (
    seq       BIGSERIAL PRIMARY KEY,
    migration BIGINT NOT NULL,
    chunk_id  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS embedsearch_migration_changes_migration
    ON embedsearch_migration_changes (migration, seq);
CREATE OR REPLACE FUNCTION embedsearch_migration_capture() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- TG_ARGV[0]: the migration's id. An update's rows keep their chunk id (the primary key).
    IF TG_OP = 'DELETE' THEN
        INSERT INTO embedsearch_migration_changes (migration, chunk_id)
        SELECT TG_ARGV[0]::bigint, chunk_id FROM old_rows;
    ELSE
        INSERT INTO embedsearch_migration_changes (migration, chunk_id)
        SELECT TG_ARGV[0]::bigint, chunk_id FROM new_rows;
    END IF;
    RETURN NULL;
END
$$;
-- A collection is renamed when its name becomes an alias of the migrated one: its documents and
-- aliases follow the name.
DO $$
DECLARE fk record;
BEGIN
    FOR fk IN SELECT conname, conrelid::regclass AS rel FROM pg_constraint
        WHERE contype = 'f' AND confrelid = 'embedsearch_collections'::regclass
          AND conrelid IN ('embedsearch_documents'::regclass, 'embedsearch_aliases'::regclass)
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.rel, fk.conname);
    END LOOP;
END
$$;
ALTER TABLE embedsearch_documents ADD CONSTRAINT embedsearch_documents_collection_fkey
    FOREIGN KEY (collection) REFERENCES embedsearch_collections (name)
    ON UPDATE CASCADE ON DELETE CASCADE;
ALTER TABLE embedsearch_aliases ADD CONSTRAINT embedsearch_aliases_collection_fkey
    FOREIGN KEY (collection) REFERENCES embedsearch_collections (name) ON UPDATE CASCADE""")

_EVENTS = ("insert", "update", "delete")


def create_capture(table: str, migration: int) -> sql.Composed:
    """The triggers that queue every chunk changed in `table` for migration `migration`."""
    parts = []
    for event in _EVENTS:
        referencing = "OLD TABLE AS old_rows" if event == "delete" else "NEW TABLE AS new_rows"
        parts.append(
            sql.SQL(
                "CREATE OR REPLACE TRIGGER {name} AFTER {event} ON {table}"
                " REFERENCING {referencing} FOR EACH STATEMENT"
                " EXECUTE FUNCTION embedsearch_migration_capture({migration})"
            ).format(
                name=sql.Identifier(_trigger(table, event)),
                event=sql.SQL(event.upper()),
                table=sql.Identifier(table),
                referencing=sql.SQL(referencing),
                migration=sql.Literal(str(migration)),
            )
        )
    return sql.SQL(";\n").join(parts)


def drop_capture(table: str) -> sql.Composed:
    return sql.SQL(";\n").join(
        sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
            sql.Identifier(_trigger(table, event)), sql.Identifier(table)
        )
        for event in _EVENTS
    )


def _trigger(table: str, event: str) -> str:
    return f"{table}_migrate_{event}"  # chunk table names are at most 42 bytes


_COLUMNS = (
    "SELECT id, name, source, target, embedder, dimensions, state, switch_asked,"
    " backfill_cursor, backfill_done, backfill_total, applied, embedded, probe, comparison,"
    " archived_as, last_error, created_at, updated_at, switched_at, capturing,"
    " (SELECT count(*) FROM embedsearch_migration_changes c WHERE c.migration = m.id)"
    " FROM embedsearch_model_migrations m"
)
GET = sql.SQL(_COLUMNS + " WHERE id = %s")
# The newest migration asked for by this name, or from or to the collection it names (before
# or after the switch, the old collection also by its name since).
LATEST = sql.SQL(
    _COLUMNS + " WHERE %(name)s IN (name, source, target, archived_as) ORDER BY id DESC LIMIT 1"
)
ACTIVE_OF_SOURCE = sql.SQL(_COLUMNS + " WHERE source = %s AND state IN ('backfill', 'ready')")
# Migrations with work left: filling, or forwarding late writes after their switch.
WORKING = sql.SQL(
    _COLUMNS + " WHERE state IN ('backfill', 'ready') OR (state = 'switched' AND capturing)"
    " ORDER BY id"
)
CREATE = sql.SQL(
    "INSERT INTO embedsearch_model_migrations"
    " (name, source, target, embedder, dimensions, switch_asked, backfill_total, probe)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
)
ASK_SWITCH = sql.SQL(
    "UPDATE embedsearch_model_migrations SET switch_asked = true, updated_at = now() WHERE id = %s"
)
RECORD_BACKFILL = sql.SQL(
    "UPDATE embedsearch_model_migrations SET backfill_cursor = %(cursor)s,"
    " backfill_done = backfill_done + %(rows)s, embedded = embedded + %(embedded)s,"
    " last_error = NULL, updated_at = now() WHERE id = %(id)s"
)
RECORD_APPLIED = sql.SQL(
    "UPDATE embedsearch_model_migrations SET applied = applied + %(rows)s,"
    " embedded = embedded + %(embedded)s, last_error = NULL, updated_at = now()"
    " WHERE id = %(id)s"
)
RECORD_READY = sql.SQL(
    "UPDATE embedsearch_model_migrations SET state = 'ready', comparison = %s, updated_at = now()"
    " WHERE id = %s AND state = 'backfill'"
)
RECORD_ERROR = sql.SQL(
    "UPDATE embedsearch_model_migrations SET last_error = %s, updated_at = now() WHERE id = %s"
)
FINISH = sql.SQL(
    "UPDATE embedsearch_model_migrations SET state = %(state)s, archived_as = %(archived)s,"
    " switched_at = CASE WHEN %(state)s = 'switched' THEN now() END,"
    " capturing = %(state)s = 'switched', updated_at = now() WHERE id = %(id)s"
)
STOP_CAPTURING = sql.SQL(
    "UPDATE embedsearch_model_migrations SET capturing = false, updated_at = now() WHERE id = %s"
)
# Seconds since the switch (None before it).
SINCE_SWITCH = sql.SQL(
    "SELECT extract(epoch FROM now() - switched_at) FROM embedsearch_model_migrations WHERE id = %s"
)
DROP_QUEUE = sql.SQL("DELETE FROM embedsearch_migration_changes WHERE migration = %s")

# Changed chunks, oldest first; one entry per chunk (its newest), each with every seq it covers.
PENDING = sql.SQL(
    "SELECT chunk_id, array_agg(seq) FROM ("
    "  SELECT chunk_id, seq FROM embedsearch_migration_changes WHERE migration = %s"
    "  ORDER BY seq LIMIT %s) AS oldest GROUP BY chunk_id ORDER BY min(seq)"
)
# Only the entries read: one committed meanwhile for the same chunk (perhaps with a smaller seq,
# sequences are not commit order) stays, and is applied next time.
ACKNOWLEDGE = sql.SQL("DELETE FROM embedsearch_migration_changes WHERE seq = ANY(%s)")
LOCK_MIGRATION = sql.SQL("SELECT pg_try_advisory_lock(hashtextextended('migration/' || %s, 9))")
ALIVE = sql.SQL("SELECT 1")

# The old collection is locked against writes while the switch drains what is left (reads go
# on); the documents registry too, whose rows the switch copies.
LOCK_DOCUMENTS = sql.SQL("LOCK TABLE embedsearch_documents IN SHARE ROW EXCLUSIVE MODE")


def lock_for_switch(table: str) -> sql.Composed:
    return sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(table))


CLEAR_DOCUMENTS = sql.SQL("DELETE FROM embedsearch_documents WHERE collection = %(target)s")
COPY_DOCUMENTS = sql.SQL("""
INSERT INTO embedsearch_documents
    (collection, document_id, content_hash, metadata, chunk_count, created_at, updated_at)
SELECT %(target)s, document_id, content_hash, metadata, chunk_count, created_at, updated_at
FROM embedsearch_documents WHERE collection = %(source)s""")


# A chunk as a migration copies it (store.model_migrations.StoredChunk).
_STORED_CHUNK = "SELECT chunk_id, content, content_hash, metadata, document_id FROM {}"


def read_rows(table: str) -> sql.Composed:
    """Chunks by id."""
    return sql.SQL(_STORED_CHUNK + " WHERE chunk_id = ANY(%s)").format(sql.Identifier(table))


def backfill_batch(table: str) -> sql.Composed:
    return sql.SQL(_STORED_CHUNK + " WHERE chunk_id > %s ORDER BY chunk_id LIMIT %s").format(
        sql.Identifier(table)
    )


def hashes(table: str) -> sql.Composed:
    return sql.SQL("SELECT chunk_id, content_hash FROM {} WHERE chunk_id = ANY(%s)").format(
        sql.Identifier(table)
    )


def delete_rows(table: str) -> sql.Composed:
    return sql.SQL("DELETE FROM {} WHERE chunk_id = ANY(%s)").format(sql.Identifier(table))


def update_metadata(table: str) -> sql.Composed:
    """A chunk whose text the new model already embedded: only its metadata and document."""
    return sql.SQL(
        "UPDATE {} AS t SET metadata = u.metadata, document_id = u.document_id, updated_at = now()"
        " FROM unnest(%s::text[], %s::jsonb[], %s::text[]) AS u (chunk_id, metadata, document_id)"
        " WHERE t.chunk_id = u.chunk_id"
        " AND (t.metadata, t.document_id) IS DISTINCT FROM (u.metadata, u.document_id)"
    ).format(sql.Identifier(table))


def sample_texts(table: str) -> sql.Composed:
    """Chunks to make sample queries of: spread over the table, the same ones every time."""
    return sql.SQL(
        "SELECT content FROM {} WHERE content IS NOT NULL ORDER BY md5(chunk_id) LIMIT %s"
    ).format(sql.Identifier(table))


# Renaming a collection (its name becomes an alias of the migrated one): the registry row (its
# documents and aliases follow), and its BM25 statistics, which are kept by name.
RENAME_COLLECTION = sql.SQL(
    "UPDATE embedsearch_collections SET name = %(new)s WHERE name = %(old)s"
)
RENAME_STATISTICS = sql.SQL(
    "UPDATE embedsearch_bm25_stats SET collection = %(new)s WHERE collection = %(old)s"
)
RENAME_DELTAS = sql.SQL(
    "UPDATE embedsearch_bm25_deltas SET collection = %(new)s WHERE collection = %(old)s"
)
MOVE_ALIASES = sql.SQL(
    "UPDATE embedsearch_aliases SET collection = %(new)s, updated_at = now()"
    " WHERE collection = %(old)s"
)
LOCK_COMPACTION = sql.SQL("SELECT pg_advisory_xact_lock(hashtextextended('bm25/' || %s, 7))")
NAME_TAKEN = sql.SQL(
    "SELECT EXISTS (SELECT 1 FROM embedsearch_collections WHERE name = %(name)s)"
    " OR EXISTS (SELECT 1 FROM embedsearch_aliases WHERE name = %(name)s)"
    " OR EXISTS (SELECT 1 FROM embedsearch_model_migrations WHERE target = %(name)s"
    "  AND state IN ('backfill', 'ready'))"
)

"""Index administration: the catalog's view of a table's ANN indexes, build locks and progress."""

from __future__ import annotations

from psycopg import sql


def _size(distributed: bool) -> sql.SQL:
    """On Citus the coordinator's table is an empty shell: sizes are the shards' sums."""
    return sql.SQL("citus_relation_size" if distributed else "pg_relation_size")


def vector_indexes(*, distributed: bool = False) -> sql.Composed:
    """The ANN indexes on a table's embedding column, with their options and size."""
    return sql.SQL("""
SELECT i.relname, am.amname, opc.opcname, coalesce(i.reloptions, '{{}}'),
       {size}(i.oid), ix.indisvalid
FROM pg_index ix
JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_am am ON am.oid = i.relam
JOIN pg_opclass opc ON opc.oid = ix.indclass[0]
WHERE ix.indrelid = to_regclass(%s) AND am.amname IN ('hnsw', 'ivfflat')
ORDER BY i.relname""").format(size=_size(distributed))


SHARED_BUFFERS = sql.SQL("SELECT pg_size_bytes(current_setting('shared_buffers'))")


def table_size(*, distributed: bool = False) -> sql.Composed:
    return sql.SQL("SELECT {}(to_regclass(%s))").format(
        sql.SQL("citus_table_size" if distributed else "pg_table_size")
    )


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


def sample_vectors(table: str) -> sql.Composed:
    return sql.SQL("SELECT embedding FROM {} TABLESAMPLE BERNOULLI (%s) LIMIT %s").format(
        sql.Identifier(table)
    )


def is_empty(table: str) -> sql.Composed:
    # SELECT 1 ... LIMIT 1: the form Citus can run on a distributed table.
    return sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {} LIMIT 1)").format(sql.Identifier(table))


def rewrite_table(table: str) -> sql.Composed:
    """VACUUM FULL: a fresh copy of the table and its indexes, each vector stored as the
    column's storage now says (migration 4: in the row), dead rows gone."""
    return sql.SQL("VACUUM (FULL, ANALYZE) {}").format(sql.Identifier(table))

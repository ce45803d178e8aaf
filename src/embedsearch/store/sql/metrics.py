"""What /metrics reads from the catalog: cheap estimates, never a scan of a chunk table."""

from __future__ import annotations

from psycopg import sql

# Rows per collection as the planner estimates them: the density that VACUUM or ANALYZE last
# saw (reltuples per page) times the table's pages now (pg_relation_size: a stat of the file).
# A table no VACUUM or ANALYZE has measured (relpages 0, reltuples 0 or -1, as small tables
# stay until they pass autovacuum's threshold) gets the cumulative statistics' live tuple
# count instead: kept by every insert and delete, reported by each backend within a second.
COLLECTION_ROWS = sql.SQL("""
SELECT c.name,
       CASE WHEN t.relpages > 0 AND t.reltuples >= 0
            THEN round(t.reltuples::float8 / t.relpages
                       * (pg_relation_size(t.oid) / current_setting('block_size')::float8))
            ELSE coalesce(pg_stat_get_live_tuples(t.oid), 0) END
FROM embedsearch_collections c
LEFT JOIN pg_class t ON t.oid = to_regclass(quote_ident(c.table_name))
ORDER BY c.name""")
# CREATE INDEX runs of this database, ours or anyone's (our builds, a REINDEX by hand).
INDEX_BUILDS_IN_PROGRESS = sql.SQL(
    "SELECT count(*) FROM pg_stat_progress_create_index WHERE datname = current_database()"
)

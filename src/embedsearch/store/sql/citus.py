"""Citus: whether the database is a coordinator, and distributing a chunk table over it."""

from __future__ import annotations

from psycopg import sql

# The citus extension's version and the server's (no row: not a Citus database), and the active
# workers.
CITUS_VERSION = sql.SQL(
    "SELECT extversion, current_setting('server_version_num')::integer"
    " FROM pg_extension WHERE extname = 'citus'"
)
ACTIVE_WORKERS = sql.SQL("SELECT count(*) FROM citus_get_active_worker_nodes()")

# The chunk table's generated bm25_length and BM25 scoring call this function on the shards:
# marked distributed, Citus keeps it on every worker, also ones added later.
DISTRIBUTE_LENGTH_FUNCTION = sql.SQL(
    "SELECT create_distributed_function('embedsearch_tsvector_length(tsvector)')"
)
# Hash-distributed by shard_key (see sql/ddl.py).
DISTRIBUTE_TABLE = sql.SQL("SELECT create_distributed_table(%s, 'shard_key', shard_count => %s)")

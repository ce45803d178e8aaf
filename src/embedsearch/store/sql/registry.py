"""The collection registry: one row per collection, recording its table, model and layout."""

from __future__ import annotations

from psycopg import sql

_COLLECTION_COLUMNS = (
    "SELECT name, table_name, model, dimensions, embedder, distance, created_at, storage,"
    " normalized, probes, index_rows, index_built_at, deferred_index, text_config, fusion, shards"
    " FROM embedsearch_collections"
)
GET_COLLECTION = sql.SQL(_COLLECTION_COLUMNS + " WHERE name = %s")
# By its name or by an alias (names and aliases never clash: registry.py checks both ways).
FIND_COLLECTION = sql.SQL(
    "{} WHERE name = coalesce("
    "(SELECT collection FROM embedsearch_aliases WHERE name = %(name)s), %(name)s)"
).format(sql.SQL(_COLLECTION_COLUMNS))

_ALIAS_COLUMNS = "SELECT name, collection, updated_at FROM embedsearch_aliases"
GET_ALIAS = sql.SQL(_ALIAS_COLUMNS + " WHERE name = %s")
LOCK_ALIAS = sql.SQL(_ALIAS_COLUMNS + " WHERE name = %s FOR UPDATE")
LIST_ALIASES = sql.SQL(_ALIAS_COLUMNS + " ORDER BY name")
ALIASES_OF = sql.SQL("SELECT name FROM embedsearch_aliases WHERE collection = %s ORDER BY name")
# Re-pointing an alias is one statement: a reader sees the old target or the new one.
SET_ALIAS = sql.SQL(
    "INSERT INTO embedsearch_aliases (name, collection) VALUES (%s, %s)"
    " ON CONFLICT (name) DO UPDATE SET collection = EXCLUDED.collection, updated_at = now()"
    " RETURNING name, collection, updated_at"
)
DROP_ALIAS = sql.SQL("DELETE FROM embedsearch_aliases WHERE name = %s RETURNING collection")
LIST_COLLECTIONS = sql.SQL(_COLLECTION_COLUMNS + " ORDER BY name")
REGISTER_COLLECTION = sql.SQL(
    "INSERT INTO embedsearch_collections"
    " (name, table_name, model, dimensions, embedder, distance, storage, normalized, text_config,"
    " shards) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (name) DO NOTHING RETURNING name"
)
RECORD_INDEX_BUILD = sql.SQL(
    "UPDATE embedsearch_collections SET probes = %s, index_rows = %s, index_built_at = now(),"
    " deferred_index = NULL WHERE name = %s"
)
DEFER_INDEX = sql.SQL("UPDATE embedsearch_collections SET deferred_index = %s WHERE name = %s")
FILL_EMBEDDER = sql.SQL(
    "UPDATE embedsearch_collections SET embedder = %s WHERE name = %s AND embedder IS NULL"
)
SET_FUSION = sql.SQL("UPDATE embedsearch_collections SET fusion = %s WHERE name = %s")
TEXT_CONFIG_EXISTS = sql.SQL("SELECT EXISTS (SELECT FROM pg_ts_config WHERE cfgname = %s)")
UNREGISTER_COLLECTION = sql.SQL("DELETE FROM embedsearch_collections WHERE name = %s")
# The declared dimension of an existing vector column (atttypmod holds it), or no row.
VECTOR_COLUMN_DIMENSIONS = sql.SQL("""
SELECT a.atttypmod FROM pg_attribute a
WHERE a.attrelid = to_regclass(%s) AND a.attname = 'embedding' AND NOT a.attisdropped""")


def other_models(table: str) -> sql.Composed:
    return sql.SQL("SELECT DISTINCT model_name FROM {} WHERE model_name <> %s LIMIT 5").format(
        sql.Identifier(table)
    )


# The active model migration from or to a collection (it cannot be dropped meanwhile).
MIGRATIONS_OF = sql.SQL(
    "SELECT source, target FROM embedsearch_model_migrations"
    " WHERE (source = %s OR target = %s) AND state IN ('backfill', 'ready') LIMIT 1"
)

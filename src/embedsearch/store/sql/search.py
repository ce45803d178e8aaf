"""Dense, lexical and hybrid search, and the per-transaction index settings they use."""

from __future__ import annotations

from psycopg import sql

from embedsearch.core.distance import Distance
from embedsearch.core.vector_index import Storage

SET_EF_SEARCH = sql.SQL("SELECT set_config('hnsw.ef_search', %s, true)")
# A session-level default (each pooled connection gets them once).
SET_SESSION_DEFAULT = sql.SQL("SELECT set_config(%s, %s, false)")
SET_PROBES = sql.SQL("SELECT set_config('ivfflat.probes', %s, true)")
# pgvector >= 0.8: keep scanning the index until `limit` rows pass the filter.
SET_ITERATIVE_SCAN = sql.SQL(
    "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),"
    " set_config('ivfflat.iterative_scan', 'relaxed_order', true)"
)


def _query_vector(storage: Storage) -> sql.Composed:
    # The query arrives as `vector`; halfvec columns compare only with halfvec.
    return sql.SQL("CAST(%(query)s AS {})").format(sql.SQL(storage.value))


def search(
    table: str,
    distance: Distance,
    condition: sql.Composable,
    *,
    order_by: Distance,
    storage: Storage,
) -> sql.Composed:
    """Nearest chunks, ordered by `order_by` (the operator the index serves, or the requested
    one for an exact scan) and scored with the requested distance. The outer ORDER BY
    restores exact order after a relaxed iterative scan."""
    return sql.SQL("""
WITH nearest AS MATERIALIZED (
    SELECT chunk_id, embedding {op} {query} AS score, embedding {order} {query} AS rank_by,
           content, metadata, document_id
    FROM {table}
    WHERE {condition}
    ORDER BY embedding {order} {query}
    LIMIT %(limit)s
)
SELECT chunk_id, score, content, metadata, document_id FROM nearest ORDER BY rank_by""").format(
        op=sql.SQL(distance.operator),
        order=sql.SQL(order_by.operator),
        query=_query_vector(storage),
        table=sql.Identifier(table),
        condition=condition,
    )


# Added to a search's condition: nothing matches when the text has no lexemes (stop words or
# punctuation only). The planner folds it to a constant: to_tsvector is immutable.
def and_has_lexemes(condition: sql.Composable) -> sql.Composed:
    return sql.SQL("{} AND to_tsvector(%(config)s::regconfig, %(text)s) <> ''::tsvector").format(
        condition
    )


# For exact search: no index scans in this transaction (bitmap scans for filters stay).
DISABLE_INDEX_SCANS = sql.SQL("SELECT set_config('enable_indexscan', 'off', true)")

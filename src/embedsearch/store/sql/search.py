"""Dense, lexical and hybrid search, and the per-transaction index settings they use."""

from __future__ import annotations

from psycopg import sql

from embedsearch.core.distance import Distance
from embedsearch.core.vector_index import Storage

# A session-level default (each pooled connection gets them once).
SET_SESSION_DEFAULT = sql.SQL("SELECT set_config(%s, %s, false)")

# The index settings a search may set for its transaction.
EF_SEARCH = "hnsw.ef_search"
PROBES = "ivfflat.probes"
# pgvector >= 0.8: keep scanning the index until `limit` rows pass the filter.
ITERATIVE_SCAN = {"hnsw.iterative_scan": "relaxed_order", "ivfflat.iterative_scan": "relaxed_order"}
# For exact search: no index scans in this transaction (bitmap scans for filters stay), and
# sequential scans allowed whatever the session says.
NO_INDEX_SCANS = {"enable_indexscan": "off", "enable_seqscan": "on"}


def set_config_local(n: int) -> sql.Composed:
    """n transaction-local settings in one round trip; parameters: name, value, name, ..."""
    return sql.SQL("SELECT {}").format(
        sql.SQL(", ").join([sql.SQL("set_config(%s, %s, true)")] * n)
    )


def set_local_on_workers(values: dict[str, str]) -> sql.Composed:
    """The same as SET LOCAL statements that Citus repeats in each worker's transaction of
    this one (citus.propagate_set_commands = 'local'), so a sharded search's settings reach
    every shard. Names are ours; values go in as literals (SET takes no parameters)."""
    statements: list[sql.Composable] = [sql.SQL("SET LOCAL citus.propagate_set_commands = 'local'")]
    statements += [
        sql.SQL("SET LOCAL {} = {}").format(sql.Identifier(*name.split(".")), sql.Literal(value))
        for name, value in values.items()
    ]
    return sql.SQL("; ").join(statements)


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

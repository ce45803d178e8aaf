"""Dense, lexical and hybrid search, and the per-transaction index settings they use."""

from __future__ import annotations

from psycopg import sql

from embedsearch.core.distance import Distance
from embedsearch.core.vector_index import Storage

SET_EF_SEARCH = sql.SQL("SELECT set_config('hnsw.ef_search', %s, true)")
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


# For exact search: no index scans in this transaction (bitmap scans for filters stay).
DISABLE_INDEX_SCANS = sql.SQL("SELECT set_config('enable_indexscan', 'off', true)")


# The full-text query. Plain words match ANY of them, as search engines do (ranking rewards
# chunks holding more of them): requiring every word found nothing for 283 of SciFact's 300
# claims (docs/eval-scifact.md). A query using websearch syntax for "phrases" or -exclusions keeps its strict
# meaning. Stop words alone give an empty query, which matches nothing.
_TSQUERY = sql.SQL(r"""(
    SELECT CASE
        WHEN %(text)s ~ '"|(^|\s)-\S' THEN websearch_to_tsquery('english', %(text)s)
        ELSE (
            SELECT coalesce(string_agg(quote_literal(lexeme), ' | '), '')::tsquery
            FROM unnest(tsvector_to_array(to_tsvector('english', %(text)s))) AS lexeme
        )
    END
) AS query (q)""")


def lexical_search(table: str, condition: sql.Composable) -> sql.Composed:
    """Full-text search: any of the words, or websearch syntax ("quoted phrases",
    -exclusions, or), ranked by ts_rank normalized by document length (larger is better;
    on SciFact it beat ts_rank_cd by +0.17 nDCG@10 with any-word queries: docs/eval-scifact.md)."""
    return sql.SQL("""
SELECT chunk_id, ts_rank(content_tsv, q, 1) AS score, content, metadata, document_id
FROM {table}, {tsquery}
WHERE content_tsv @@ q AND {condition}
ORDER BY score DESC, chunk_id
LIMIT %(limit)s""").format(table=sql.Identifier(table), condition=condition, tsquery=_TSQUERY)


def hybrid_search(
    table: str, condition: sql.Composable, *, order_by: Distance, storage: Storage
) -> sql.Composed:
    """Reciprocal Rank Fusion of the dense (cosine index) and lexical top-k lists, in one
    round trip: score = sum over lists of 1 / (rrf_k + rank); larger is better."""
    return sql.SQL("""
WITH dense AS MATERIALIZED (
    SELECT chunk_id, row_number() OVER (ORDER BY distance) AS rank
    FROM (
        SELECT chunk_id, embedding {order} {query} AS distance FROM {table}
        WHERE {condition} ORDER BY embedding {order} {query} LIMIT %(k)s
    ) AS nearest
), lexical AS MATERIALIZED (
    SELECT chunk_id, row_number() OVER (ORDER BY text_rank DESC, chunk_id) AS rank
    FROM (
        SELECT chunk_id, ts_rank(content_tsv, q, 1) AS text_rank
        FROM {table}, {tsquery}
        WHERE content_tsv @@ q AND {condition}
        ORDER BY text_rank DESC, chunk_id LIMIT %(k)s
    ) AS matched
), fused AS (
    SELECT chunk_id, sum(1.0 / (%(rrf_k)s + rank)) AS score
    FROM (SELECT * FROM dense UNION ALL SELECT * FROM lexical) AS ranks
    GROUP BY chunk_id
)
SELECT c.chunk_id, f.score, c.content, c.metadata, c.document_id
FROM fused AS f JOIN {table} AS c USING (chunk_id)
ORDER BY f.score DESC, c.chunk_id
LIMIT %(limit)s""").format(
        table=sql.Identifier(table),
        condition=condition,
        order=sql.SQL(order_by.operator),
        query=_query_vector(storage),
        tsquery=_TSQUERY,
    )

"""BM25 in plain PostgreSQL (no extension): corpus statistics kept by triggers, scoring.

Statistics per collection: for each lexeme its document frequency (chunks holding it), and
under the lexeme '' the chunk count (df) and total length in lexemes (length). Triggers on the
chunk table append per-statement deltas; nothing is updated in place, so concurrent writers
never wait on one another's statistics. Reads add the compacted base and the deltas; compaction
folds the deltas into the base (store/bm25.py decides when).
"""

from __future__ import annotations

from psycopg import sql

# Version 3 of the schema: the functions and tables every collection's triggers use.
V3_FUNCTIONS_AND_TABLES = sql.SQL(r"""
CREATE OR REPLACE FUNCTION embedsearch_tsvector_length(tsvector) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(sum(coalesce(array_length(positions, 1), 1)), 0)::integer FROM unnest($1)
$$;
CREATE TABLE IF NOT EXISTS embedsearch_bm25_stats (
    collection TEXT NOT NULL,
    lexeme     TEXT NOT NULL,  -- '': the collection's totals
    df         BIGINT NOT NULL,  -- chunks holding the lexeme ('': chunks)
    length     BIGINT NOT NULL DEFAULT 0,  -- '': lexemes in all chunks
    PRIMARY KEY (collection, lexeme)
);
CREATE TABLE IF NOT EXISTS embedsearch_bm25_deltas (
    collection TEXT NOT NULL,
    lexeme     TEXT NOT NULL,
    df         BIGINT NOT NULL,
    length     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS embedsearch_bm25_deltas_lexeme
    ON embedsearch_bm25_deltas (collection, lexeme);
-- Row trigger: a chunk's length in lexemes, from the collection's text search configuration.
CREATE OR REPLACE FUNCTION embedsearch_bm25_length() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.bm25_length := embedsearch_tsvector_length(
        to_tsvector(TG_ARGV[0]::regconfig, coalesce(NEW.content, '')));
    RETURN NEW;
END
$$;
-- Statement triggers: what the statement added (+1) and removed (-1), per lexeme.
CREATE OR REPLACE FUNCTION embedsearch_bm25_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO embedsearch_bm25_deltas (collection, lexeme, df, length)
        SELECT TG_ARGV[0], lexeme, sum(sign), sum(length) FROM (
            SELECT lexeme, 1 AS sign, 0 AS length
            FROM new_rows, unnest(tsvector_to_array(content_tsv)) AS lexeme
            UNION ALL
            SELECT '', 1, coalesce(bm25_length, embedsearch_tsvector_length(content_tsv))
            FROM new_rows
        ) AS change GROUP BY lexeme;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO embedsearch_bm25_deltas (collection, lexeme, df, length)
        SELECT TG_ARGV[0], lexeme, sum(sign), sum(length) FROM (
            SELECT lexeme, -1 AS sign, 0 AS length
            FROM old_rows, unnest(tsvector_to_array(content_tsv)) AS lexeme
            UNION ALL
            SELECT '', -1, -coalesce(bm25_length, embedsearch_tsvector_length(content_tsv))
            FROM old_rows
        ) AS change GROUP BY lexeme;
    ELSE
        INSERT INTO embedsearch_bm25_deltas (collection, lexeme, df, length)
        SELECT TG_ARGV[0], lexeme, sum(sign), sum(length) FROM (
            SELECT lexeme, 1 AS sign, 0::bigint AS length
            FROM new_rows, unnest(tsvector_to_array(content_tsv)) AS lexeme
            UNION ALL
            SELECT lexeme, -1, 0 FROM old_rows, unnest(tsvector_to_array(content_tsv)) AS lexeme
            UNION ALL
            SELECT '', 0, coalesce(bm25_length, embedsearch_tsvector_length(content_tsv))
            FROM new_rows
            UNION ALL
            SELECT '', 0, -coalesce(bm25_length, embedsearch_tsvector_length(content_tsv))
            FROM old_rows
        ) AS change GROUP BY lexeme HAVING sum(sign) <> 0 OR sum(length) <> 0;
    END IF;
    RETURN NULL;
END
$$""")

# The statistics of a collection's existing chunks, for collections made before version 3.
BACKFILL = sql.SQL("""
INSERT INTO embedsearch_bm25_deltas (collection, lexeme, df, length)
SELECT %(collection)s, lexeme, sum(sign), sum(length) FROM (
    SELECT lexeme, 1 AS sign, 0 AS length
    FROM batch, unnest(tsvector_to_array(content_tsv)) AS lexeme
    UNION ALL
    SELECT '', 1, coalesce(bm25_length, embedsearch_tsvector_length(content_tsv)) FROM batch
) AS change GROUP BY lexeme""")


def backfill_batch(table: str) -> sql.Composed:
    """Count one batch of chunks (keyset order); returns the batch's last chunk id."""
    return sql.SQL("""
WITH batch AS MATERIALIZED (
    SELECT chunk_id, content_tsv, bm25_length FROM {table}
    WHERE chunk_id > %(after)s ORDER BY chunk_id LIMIT %(size)s
), counted AS ({backfill})
SELECT max(chunk_id), count(*) FROM batch""").format(table=sql.Identifier(table), backfill=BACKFILL)


def count_all(table: str) -> sql.Composed:
    """Count every chunk of a table at once (the brief's table adopted with rows in it)."""
    return sql.SQL(
        "WITH batch AS MATERIALIZED (SELECT content_tsv, bm25_length FROM {}) {}"
    ).format(sql.Identifier(table), BACKFILL)


def add_length_column(table: str) -> sql.Composed:
    """Nullable, no default: instant on any size of table; older rows are measured when read.
    The tsvector is kept in the row from now on (rows written before stay where they are)."""
    return sql.SQL(
        "ALTER TABLE {} ADD COLUMN IF NOT EXISTS bm25_length INTEGER,"
        " ALTER COLUMN content_tsv SET STORAGE MAIN"
    ).format(sql.Identifier(table))


def create_triggers(table: str, collection: str, text_config: str) -> sql.Composed:
    """The length and statistics triggers of a chunk table (trigger arguments are literals:
    the collection name and configuration are validated identifiers)."""
    return sql.SQL("""
CREATE OR REPLACE TRIGGER {length} BEFORE INSERT OR UPDATE OF content ON {table}
    FOR EACH ROW EXECUTE FUNCTION embedsearch_bm25_length({config});
CREATE OR REPLACE TRIGGER {inserted} AFTER INSERT ON {table}
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION embedsearch_bm25_count({collection});
CREATE OR REPLACE TRIGGER {updated} AFTER UPDATE ON {table}
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION embedsearch_bm25_count({collection});
CREATE OR REPLACE TRIGGER {deleted} AFTER DELETE ON {table}
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION embedsearch_bm25_count({collection})""").format(
        table=sql.Identifier(table),
        length=sql.Identifier(f"{table}_bm25_length"),
        inserted=sql.Identifier(f"{table}_bm25_insert"),
        updated=sql.Identifier(f"{table}_bm25_update"),
        deleted=sql.Identifier(f"{table}_bm25_delete"),
        config=sql.Literal(text_config),
        collection=sql.Literal(collection),
    )


DROP_STATISTICS = sql.SQL("DELETE FROM embedsearch_bm25_stats WHERE collection = %(collection)s")
DROP_DELTAS = sql.SQL("DELETE FROM embedsearch_bm25_deltas WHERE collection = %(collection)s")

# Fold the deltas into the base (one compactor at a time per collection), dropping lexemes no
# chunk holds any more.
TRY_LOCK_COMPACTION = sql.SQL(
    "SELECT pg_try_advisory_xact_lock(hashtextextended('bm25/' || %(collection)s, 7))"
)
COMPACT = sql.SQL("""
WITH moved AS (
    DELETE FROM embedsearch_bm25_deltas WHERE collection = %(collection)s
    RETURNING lexeme, df, length
), summed AS (
    SELECT lexeme, sum(df) AS df, sum(length) AS length FROM moved GROUP BY lexeme ORDER BY lexeme
)
INSERT INTO embedsearch_bm25_stats AS s (collection, lexeme, df, length)
SELECT %(collection)s, lexeme, df, length FROM summed
ON CONFLICT (collection, lexeme) DO UPDATE
    SET df = s.df + EXCLUDED.df, length = s.length + EXCLUDED.length""")
DROP_ABSENT_LEXEMES = sql.SQL(
    "DELETE FROM embedsearch_bm25_stats WHERE collection = %(collection)s AND lexeme <> ''"
    " AND df <= 0"
)
COUNT_DELTAS = sql.SQL(
    "SELECT count(*) FROM embedsearch_bm25_deltas WHERE collection = %(collection)s"
)

# A query's lexemes with their document frequencies, and the totals (lexeme ''), in one read.
QUERY_STATISTICS = sql.SQL("""
WITH query AS (
    SELECT DISTINCT unnest(tsvector_to_array(to_tsvector(%(config)s::regconfig, %(text)s)))
        AS lexeme
), counts AS (
    SELECT lexeme, df, length FROM embedsearch_bm25_stats
    WHERE collection = %(collection)s AND lexeme IN (SELECT lexeme FROM query UNION ALL SELECT '')
    UNION ALL
    SELECT lexeme, df, length FROM embedsearch_bm25_deltas
    WHERE collection = %(collection)s AND lexeme IN (SELECT lexeme FROM query UNION ALL SELECT '')
)
SELECT q.lexeme, coalesce(sum(c.df), 0), coalesce(sum(c.length), 0)
FROM (SELECT lexeme FROM query UNION ALL SELECT '') AS q LEFT JOIN counts AS c USING (lexeme)
GROUP BY q.lexeme""")

# Chunks holding any of the given lexemes.
_ANY_OF = sql.SQL(
    "(SELECT coalesce(string_agg(quote_literal(l), ' | '), '')::tsquery"
    " FROM unnest(%(match)s::text[]) AS l)"
)
# The query's own meaning, for "phrases" and -exclusions.
_WEBSEARCH = sql.SQL("websearch_to_tsquery(%(config)s::regconfig, %(text)s)")


def score(table: str, condition: sql.Composable, *, websearch: bool) -> sql.Composed:
    """BM25 (Lucene's form) of the chunks that match, best first. Per chunk, the query's
    lexemes are picked out of its tsvector (setweight + ts_filter, both in C) rather than
    unnesting all of it. (The term frequencies come from a subquery, not a nested LATERAL:
    Citus cannot deparse that one for the shards.)"""
    return sql.SQL("""
SELECT c.chunk_id, s.score, c.content, c.metadata, c.document_id
FROM {table} AS c
CROSS JOIN LATERAL (
    SELECT sum((%(idf)s::float8[])[array_position(%(lexemes)s::text[], u.lexeme)] * u.tf
        * (%(k1)s + 1) / (u.tf + %(k1)s * (1 - %(b)s + %(b)s
        * coalesce(c.bm25_length, embedsearch_tsvector_length(c.content_tsv)) / %(avgdl)s)))
        AS score
    FROM (
        SELECT lexeme, coalesce(array_length(positions, 1), 1)::float8 AS tf
        FROM unnest(ts_filter(setweight(c.content_tsv, 'A', %(lexemes)s::text[]), '{{a}}'))
    ) AS u
) AS s
WHERE c.content_tsv @@ {match} AND {condition}
ORDER BY s.score DESC, c.chunk_id
LIMIT %(limit)s""").format(
        table=sql.Identifier(table),
        match=sql.SQL("{} AND c.content_tsv @@ {}").format(_WEBSEARCH, _ANY_OF)
        if websearch
        else _ANY_OF,
        condition=condition,
    )


# The statistics' deltas of a write to a sharded table (no triggers there), from what it
# removed (-1) and added (+1): each chunk's lexemes (tsvector text) and length in lexemes.
# The same sums as the triggers' for the same rows.
RECORD_CHANGES = sql.SQL("""
INSERT INTO embedsearch_bm25_deltas (collection, lexeme, df, length)
SELECT %(collection)s, lexeme, sum(sign), sum(length) FROM (
    SELECT lexeme, c.sign, 0::bigint AS length
    FROM unnest(%(tsvectors)s::text[]::tsvector[], %(signs)s::integer[]) AS c (tsv, sign),
         unnest(tsvector_to_array(c.tsv)) AS lexeme
    UNION ALL
    SELECT '', c.sign, c.sign * c.length
    FROM unnest(%(signs)s::integer[], %(lengths)s::bigint[]) AS c (sign, length)
) AS change GROUP BY lexeme HAVING sum(sign) <> 0 OR sum(length) <> 0""")

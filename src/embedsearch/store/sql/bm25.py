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


def create_triggers_v3(table: str, collection: str, text_config: str) -> sql.Composed:
    """The length and statistics triggers of a chunk table as version 3 made them (trigger
    arguments are literals: the collection name and configuration are validated
    identifiers); version 5 replaces the statistics triggers (create_triggers)."""
    count = sql.SQL("embedsearch_bm25_count({})").format(sql.Literal(collection))
    return _triggers(table, text_config, count)


def _triggers(table: str, text_config: str, statement_function: sql.Composable) -> sql.Composed:
    """A chunk table's BM25 triggers: its length per row, and `statement_function` after each
    statement that inserts, updates or deletes rows (with the transition tables it reads)."""
    return sql.SQL("""
CREATE OR REPLACE TRIGGER {length} BEFORE INSERT OR UPDATE OF content ON {table}
    FOR EACH ROW EXECUTE FUNCTION embedsearch_bm25_length({config});
CREATE OR REPLACE TRIGGER {inserted} AFTER INSERT ON {table}
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {function};
CREATE OR REPLACE TRIGGER {updated} AFTER UPDATE ON {table}
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {function};
CREATE OR REPLACE TRIGGER {deleted} AFTER DELETE ON {table}
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {function}""").format(
        table=sql.Identifier(table),
        length=sql.Identifier(f"{table}_bm25_length"),
        inserted=sql.Identifier(f"{table}_bm25_insert"),
        updated=sql.Identifier(f"{table}_bm25_update"),
        deleted=sql.Identifier(f"{table}_bm25_delete"),
        config=sql.Literal(text_config),
        function=statement_function,
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

# A query's lexemes with their document frequencies, and the totals (lexeme ''): CTEs `query`
# and `counted` (lexeme, df, length), for the statements below.
_COUNTED = sql.SQL("""
query AS (
    SELECT DISTINCT unnest(tsvector_to_array(to_tsvector(%(config)s::regconfig, %(text)s)))
        AS lexeme
), counts AS (
    SELECT lexeme, df, length FROM embedsearch_bm25_stats
    WHERE collection = %(collection)s AND lexeme IN (SELECT lexeme FROM query UNION ALL SELECT '')
    UNION ALL
    SELECT lexeme, df, length FROM embedsearch_bm25_deltas
    WHERE collection = %(collection)s AND lexeme IN (SELECT lexeme FROM query UNION ALL SELECT '')
), counted AS (
    SELECT q.lexeme, coalesce(sum(c.df), 0) AS df, coalesce(sum(c.length), 0) AS length
    FROM (SELECT lexeme FROM query UNION ALL SELECT '') AS q LEFT JOIN counts AS c USING (lexeme)
    GROUP BY q.lexeme
)""")
QUERY_STATISTICS = sql.SQL("WITH {} SELECT lexeme, df, length FROM counted").format(_COUNTED)

# Chunks holding any of the given lexemes.
_ANY_OF = sql.SQL(
    "(SELECT coalesce(string_agg(quote_literal(l), ' | '), '')::tsquery"
    " FROM unnest(%(lexemes)s::text[]) AS l)"
)
# The query's own meaning, for "phrases" and -exclusions.
_WEBSEARCH = sql.SQL("websearch_to_tsquery(%(config)s::regconfig, %(text)s)")


def score_matched(table: str, condition: sql.Composable, *, websearch: bool) -> sql.Composed:
    """BM25 (Lucene's form) of the chunks the GIN index matches (any of the query's lexemes;
    with `websearch`, websearch_to_tsquery's meaning too), best first: for "phrases" and
    -exclusions, and on sharded tables, which have no postings. Per chunk, the query's lexemes
    are picked out of its tsvector (setweight + ts_filter, both in C) rather than unnesting all
    of it. (The term frequencies come from a subquery, not a nested LATERAL: Citus cannot
    deparse that one for the shards.)"""
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


# Version 5: every collection's postings, one row per (lexeme, chunk) with the lexeme's
# frequency in the chunk and the chunk's length. A query then reads only its own lexemes' rows
# from one covering index (an index-only scan), instead of every matching chunk's row and
# tsvector: at 100k chunks, 18-25 ms instead of 264 ms for a 7-lexeme query matching 22,836
# chunks. One statement trigger per write keeps both the postings and the statistics' deltas
# (a lexeme's df is its postings' count: counted from what was posted or removed, in one
# pass). Postings are inserted in index order (1.7x faster than in the order they come). A row
# whose text did not change keeps its postings. TG_ARGV: the collection, its postings table.
V5_INDEX_FUNCTION = sql.SQL(r"""
CREATE OR REPLACE FUNCTION embedsearch_bm25_index() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    post CONSTANT text := $q$
        WITH posted AS (
            INSERT INTO %1$I (lexeme, chunk_id, tf, dl)
            SELECT u.lexeme, n.chunk_id, coalesce(array_length(u.positions, 1), 1),
                coalesce(n.bm25_length, embedsearch_tsvector_length(n.content_tsv))
            FROM %2$s AS n, unnest(n.content_tsv) AS u
            ORDER BY 1, 2
            RETURNING lexeme
        )
        INSERT INTO embedsearch_bm25_deltas (collection, lexeme, df, length)
        SELECT $1, lexeme, count(*), 0 FROM posted GROUP BY lexeme$q$;
    unpost CONSTANT text := $q$
        WITH gone AS (
            DELETE FROM %1$I AS p USING %2$s AS o, unnest(o.content_tsv) AS u
            WHERE p.lexeme = u.lexeme AND p.chunk_id = o.chunk_id
            RETURNING p.lexeme
        )
        INSERT INTO embedsearch_bm25_deltas (collection, lexeme, df, length)
        SELECT $1, lexeme, -count(*), 0 FROM gone GROUP BY lexeme$q$;
    -- The rows of one transition table without a row of the same chunk and text in the other.
    changed CONSTANT text := '(SELECT * FROM %s AS r WHERE NOT EXISTS (SELECT 1 FROM %s AS s'
        ' WHERE s.chunk_id = r.chunk_id AND s.content_tsv = r.content_tsv))';
    length CONSTANT text :=
        'coalesce(sum(coalesce(bm25_length, embedsearch_tsvector_length(content_tsv))), 0)';
    totals CONSTANT text := 'INSERT INTO embedsearch_bm25_deltas (collection, lexeme, df, length)'
        ' SELECT $1, '''', %s, %s %s';  -- '''': the lexeme '' of the totals
BEGIN
    IF TG_OP = 'INSERT' THEN
        EXECUTE format(post, TG_ARGV[1], 'new_rows') USING TG_ARGV[0];
        EXECUTE format(totals, 'count(*)', length, 'FROM new_rows HAVING count(*) > 0')
            USING TG_ARGV[0];
    ELSIF TG_OP = 'DELETE' THEN
        EXECUTE format(unpost, TG_ARGV[1], 'old_rows') USING TG_ARGV[0];
        EXECUTE format(totals, '-count(*)', '-' || length, 'FROM old_rows HAVING count(*) > 0')
            USING TG_ARGV[0];
    ELSE
        EXECUTE format(unpost, TG_ARGV[1], format(changed, 'old_rows', 'new_rows'))
            USING TG_ARGV[0];
        EXECUTE format(post, TG_ARGV[1], format(changed, 'new_rows', 'old_rows'))
            USING TG_ARGV[0];
        EXECUTE format(totals, '0', format('(SELECT %1$s FROM new_rows) - (SELECT %1$s FROM old_rows)', length),
            format('WHERE (SELECT %1$s FROM new_rows) <> (SELECT %1$s FROM old_rows)', length))
            USING TG_ARGV[0];
    END IF;
    RETURN NULL;
END
$$""")


def postings_table(table: str) -> str:
    """The postings table of a chunk table (names stay within PostgreSQL's 63 bytes: chunk
    table names are at most 42)."""
    return f"{table}_postings"


def create_postings_table(table: str, *, keyed: bool = True) -> sql.Composed:
    """The postings table of a chunk table. Autovacuum visits it sooner than by default:
    index-only scans need the visibility map of new rows. `keyed=False`: without its primary
    key, for a bulk fill (add_postings_key then builds the index sorted, half the size of one
    grown row by row)."""
    return sql.SQL("""
CREATE TABLE IF NOT EXISTS {postings} (
    lexeme   TEXT NOT NULL,
    chunk_id VARCHAR(255) NOT NULL,
    tf       INTEGER NOT NULL,
    dl       INTEGER NOT NULL{key}
) WITH (autovacuum_vacuum_insert_scale_factor = 0.02)""").format(
        postings=sql.Identifier(postings_table(table)),
        key=sql.SQL(",\n    PRIMARY KEY (lexeme, chunk_id) INCLUDE (tf, dl)" if keyed else ""),
    )


def add_postings_key(table: str) -> sql.Composed:
    return sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (lexeme, chunk_id) INCLUDE (tf, dl)").format(
        sql.Identifier(postings_table(table))
    )


def create_triggers(table: str, collection: str, text_config: str) -> sql.Composed:
    """The triggers that keep a chunk table's BM25 data: its length per row, and its postings
    and statistics per statement (the names of version 3's statistics triggers: replacing
    them). Trigger arguments are literals: the names are validated identifiers."""
    index = sql.SQL("embedsearch_bm25_index({}, {})").format(
        sql.Literal(collection), sql.Literal(postings_table(table))
    )
    return _triggers(table, text_config, index)


def lock_for_backfill(table: str) -> sql.Composed:
    """Writes wait while a migration posts a table's existing chunks (reads go on): a chunk
    written meanwhile would be neither posted by the fill nor by triggers not yet committed."""
    return sql.SQL("LOCK TABLE {} IN SHARE MODE").format(sql.Identifier(table))


def backfill_postings_batch(table: str, *, keyed: bool = True) -> sql.Composed:
    """The postings of one batch of existing chunks (keyset order; size NULL: all of them);
    returns the batch's last chunk id and its size. Into a keyed table, chunks already posted
    are left as they are."""
    return sql.SQL("""
WITH batch AS MATERIALIZED (
    SELECT chunk_id, content_tsv, bm25_length FROM {table}
    WHERE chunk_id > %(after)s ORDER BY chunk_id LIMIT %(size)s
), posted AS (
    INSERT INTO {postings} (lexeme, chunk_id, tf, dl)
    SELECT u.lexeme, b.chunk_id, coalesce(array_length(u.positions, 1), 1),
        coalesce(b.bm25_length, embedsearch_tsvector_length(b.content_tsv))
    FROM batch AS b, unnest(b.content_tsv) AS u{conflict}
)
SELECT max(chunk_id), count(*) FROM batch""").format(
        table=sql.Identifier(table),
        postings=sql.Identifier(postings_table(table)),
        conflict=sql.SQL("\n    ON CONFLICT DO NOTHING" if keyed else ""),
    )


def drop_postings(table: str) -> sql.Composed:
    return sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(postings_table(table)))


# One posting's share of a chunk's score (q: the term's idf and the average length; p: the
# posting's tf and the chunk's length). It is below idf * (k1 + 1) whatever tf and length are:
# the bound the pruning below rests on.
_SHARE = "q.idf * p.tf * (%(k1)s + 1) / (p.tf + %(k1)s * (1 - %(b)s + %(b)s * p.dl / q.avgdl))"


def sum_postings(table: str, condition: sql.Composable) -> sql.Composed:
    """score_postings without the pruning (every posting of the query's lexemes summed per
    chunk, the statement of the previous release), for comparison: the same columns."""
    return sql.SQL("""
WITH {counted}, totals AS (
    SELECT df::float8 AS chunks, greatest(length::float8 / nullif(df, 0), 1) AS avgdl
    FROM counted WHERE lexeme = '' AND df > 0
), terms AS MATERIALIZED (
    SELECT c.lexeme, ln(1 + (t.chunks - c.df::float8 + 0.5) / (c.df::float8 + 0.5)) AS idf,
        t.avgdl
    FROM counted AS c, totals AS t WHERE c.lexeme <> '' AND c.df > 0
), scored AS MATERIALIZED (
    SELECT p.chunk_id, sum({share}) AS score
    FROM terms AS q JOIN {postings} AS p ON p.lexeme = q.lexeme
    GROUP BY p.chunk_id
    ORDER BY score DESC, p.chunk_id
    LIMIT %(depth)s
)
SELECT c.chunk_id, s.score, c.content, c.metadata, c.document_id, false
FROM scored AS s JOIN {table} AS c ON c.chunk_id = s.chunk_id
WHERE {condition}
ORDER BY s.score DESC, c.chunk_id
LIMIT %(limit)s""").format(
        counted=_COUNTED,
        share=sql.SQL(_SHARE),
        table=sql.Identifier(table),
        postings=sql.Identifier(postings_table(table)),
        condition=condition,
    )


def score_postings(table: str, condition: sql.Composable) -> sql.Composed:
    """BM25 (Lucene's form) from the postings of the query's lexemes, best first, in one
    statement (one snapshot, one round trip): the query's statistics, the `depth` best chunks by
    score, then those of them the filter keeps (the caller deepens when a filter leaves fewer
    than `limit`). A query without lexemes that any chunk holds finds nothing. The last column
    says whether the pruning below found the `depth` best.

    Exact top-`depth` pruning (MaxScore's idea): no chunk gains more than idf * (k1 + 1) from a
    term, so the common terms (low idf) whose bounds add up to less than a score some `depth`
    chunks are known to reach cannot lift a chunk that holds none of the rarer terms into the
    top `depth`. Steps: (1) `seed`: the `depth` best chunks by the rarest terms alone (their
    postings, at least `seed` of them), scored in full by point lookups: `depth` chunks reach
    `theta`, their smallest score. (2) `rest`: the most common terms whose bounds add up to
    less than theta; only chunks holding another term can be in the top `depth`. (3)
    `partial`: those chunks' scores from the other terms; a chunk whose partial score plus
    the rest's bound is below the best known floor cannot make it: the others are
    `candidates`. (4) The rest's shares of the candidates only, by point lookups when there
    are few of them (`probe`: what one costs against reading one posting in a row), or from
    the rest's postings filtered by the candidates. (5) Those within rounding of the
    `depth`-th are summed again in lexeme order, as the full sum adds them: the pruned top
    `depth` is the exact one, with the same scores, order and ties. When the pruning cannot pay (the other terms hold more than 1/`ratio` of the
    query's postings, or fewer than `depth` chunks hold the rarest terms), every posting of
    the query's lexemes is summed per chunk, as before. Bounds carry a 1e-9 relative margin
    against rounding. Steps that are not needed are skipped at run time (one-time filters)."""
    share = sql.SQL(_SHARE)
    return sql.SQL("""
WITH {counted}, totals AS (
    SELECT df::float8 AS chunks, greatest(length::float8 / nullif(df, 0), 1) AS avgdl
    FROM counted WHERE lexeme = '' AND df > 0
), terms AS MATERIALIZED (  -- computed once per lexeme, not once per posting
    SELECT c.lexeme, ln(1 + (t.chunks - c.df::float8 + 0.5) / (c.df::float8 + 0.5)) AS idf,
        t.avgdl, c.df
    FROM counted AS c, totals AS t WHERE c.lexeme <> '' AND c.df > 0
), ranked AS MATERIALIZED (  -- below: the bounds of this term and all more common ones
    SELECT lexeme, idf, avgdl, df, idf * (%(k1)s + 1) AS bound,
        sum(idf * (%(k1)s + 1)) OVER (ORDER BY idf, lexeme ROWS UNBOUNDED PRECEDING) AS below,
        sum(df) OVER (ORDER BY idf DESC, lexeme DESC ROWS UNBOUNDED PRECEDING) - df
            < %(seed)s AS rarest
    FROM terms
), seed AS MATERIALIZED (
    SELECT p.chunk_id FROM ranked AS q JOIN {postings} AS p ON p.lexeme = q.lexeme
    WHERE q.rarest
    GROUP BY p.chunk_id ORDER BY sum({share}) DESC LIMIT %(depth)s
), floor AS MATERIALIZED (
    SELECT min(f.score) AS theta, count(*) AS chunks FROM seed AS s CROSS JOIN LATERAL (
        SELECT sum({share}) AS score
        FROM terms AS q JOIN {postings} AS p ON p.lexeme = q.lexeme AND p.chunk_id = s.chunk_id
    ) AS f
), split AS MATERIALIZED (
    SELECT q.lexeme, q.idf, q.avgdl, q.df, q.bound,
        NOT q.rarest AND q.below * (1 + 1e-9) < f.theta AS rest
    FROM ranked AS q, floor AS f WHERE f.chunks = %(depth)s
), plan AS MATERIALIZED (
    SELECT coalesce(sum(df) FILTER (WHERE NOT rest) * %(ratio)s < sum(df), false) AS pruning,
        coalesce(sum(bound) FILTER (WHERE rest), 0) * (1 + 1e-9) AS rest,
        count(*) FILTER (WHERE rest) AS rest_terms,
        coalesce(sum(df) FILTER (WHERE rest), 0) AS rest_postings
    FROM split
), partial AS MATERIALIZED (
    SELECT p.chunk_id, sum({share}) AS score
    FROM split AS q JOIN {postings} AS p ON p.lexeme = q.lexeme
    WHERE NOT q.rest AND (SELECT pruning FROM plan)
    GROUP BY p.chunk_id
), candidates AS MATERIALIZED (
    SELECT s.chunk_id, s.score FROM partial AS s
    WHERE s.score >= greatest((SELECT theta FROM floor),
        (SELECT score FROM partial ORDER BY score DESC OFFSET %(depth)s - 1 LIMIT 1))
        * (1 - 1e-9) - (SELECT rest FROM plan)
), probing AS MATERIALIZED (
    SELECT (SELECT count(*) FROM candidates) * rest_terms * %(probe)s < rest_postings AS probe
    FROM plan
), probed AS (
    SELECT s.chunk_id, f.score FROM candidates AS s CROSS JOIN LATERAL (
        SELECT sum({share}) AS score
        FROM split AS q JOIN {postings} AS p ON p.lexeme = q.lexeme AND p.chunk_id = s.chunk_id
        WHERE q.rest
    ) AS f
    WHERE (SELECT probe FROM probing)
), scanned AS (  -- IS TRUE: a hashed filter, never one lookup per posting
    SELECT p.chunk_id, sum({share}) AS score
    FROM split AS q JOIN {postings} AS p ON p.lexeme = q.lexeme
    WHERE q.rest AND NOT (SELECT probe FROM probing)
        AND (p.chunk_id IN (SELECT chunk_id FROM candidates)) IS TRUE
    GROUP BY p.chunk_id
), summed AS MATERIALIZED (
    SELECT s.chunk_id, s.score + coalesce(r.score, 0) AS score
    FROM candidates AS s LEFT JOIN (SELECT * FROM probed UNION ALL SELECT * FROM scanned) AS r
        USING (chunk_id)
), scored AS (  -- the best again, summed in lexeme order (ties stay ties whatever the plan)
    (SELECT s.chunk_id, f.score, true AS pruned FROM summed AS s CROSS JOIN LATERAL (
        SELECT sum({share} ORDER BY q.lexeme) AS score
        FROM terms AS q JOIN {postings} AS p ON p.lexeme = q.lexeme AND p.chunk_id = s.chunk_id
    ) AS f
    WHERE s.score >= (SELECT score FROM summed ORDER BY score DESC OFFSET %(depth)s - 1 LIMIT 1)
        * (1 - 1e-9)
    ORDER BY f.score DESC, s.chunk_id
    LIMIT %(depth)s)
    UNION ALL
    (SELECT p.chunk_id, sum({share}) AS score, false
    FROM terms AS q JOIN {postings} AS p ON p.lexeme = q.lexeme
    WHERE NOT coalesce((SELECT pruning FROM plan), false)
    GROUP BY p.chunk_id
    ORDER BY score DESC, p.chunk_id
    LIMIT %(depth)s)
)
SELECT c.chunk_id, s.score, c.content, c.metadata, c.document_id, s.pruned
FROM scored AS s JOIN {table} AS c ON c.chunk_id = s.chunk_id
WHERE {condition}
ORDER BY s.score DESC, c.chunk_id
LIMIT %(limit)s""").format(
        counted=_COUNTED,
        share=share,
        table=sql.Identifier(table),
        postings=sql.Identifier(postings_table(table)),
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

"""Lexical search ranked by BM25, exact, over one collection's chunks.

Lucene's BM25 (k1 1.2, b 0.75; idf = ln(1 + (N - df + 0.5) / (df + 0.5))) over the lexemes of
the collection's text search configuration. Plain queries are scored from the collection's
postings (one row per lexeme and chunk: its frequency there and the chunk's length, kept by
triggers; sql/bm25.py): only the query's lexemes' rows are read, from one covering index, and
summed per chunk; for a shallow top k, the most common terms only for the chunks that can still
make it (exact pruning, see Pruning). Queries with "phrases" or -exclusions need positions, and are scored over the
chunks the GIN index matches. The statistics (chunks, total length, document frequencies) come
from the statistics tables, kept by the same writes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from embedsearch.store.database import Connection
from embedsearch.store.filters import compile_filter
from embedsearch.store.records import SearchHit
from embedsearch.store.replicas import retry_elsewhere
from embedsearch.store.sql import bm25 as sql

if TYPE_CHECKING:
    from embedsearch.store.collection import CollectionHandle

K1 = 1.2
B = 0.75
# "phrases", -exclusions: the query keeps websearch_to_tsquery's strict meaning.
_WEBSEARCH_SYNTAX = re.compile(r'"|(^|\s)-\S')
# Compact a collection's deltas after this many writes to it from one process (and at the end
# of an ingest): reads sum the deltas of the query's lexemes, so they must not pile up.
COMPACT_EVERY_WRITES = 64
# With a filter, how many times `limit` the best chunks by score are read before filtering,
# and how much deeper each retry goes.
_FILTER_DEPTH = 8


@dataclass(frozen=True)
class Pruning:
    """How the exact top-k pruning of a plain query (sql.score_postings) decides, measured at
    100k chunks (benchmarks/lexical.py): the rarest terms' postings scored first (at least
    `seed`, and 4 per chunk asked for), the cost of one point lookup against reading one
    posting in a row (`probe`), and pruning only when the terms left to sum hold less than
    1/`ratio` of the query's postings. Only for the best `max_depth` chunks or fewer: the
    deeper, the lower the score to beat and the more chunks stay candidates (at 100 deep, as a
    hybrid search asks, pruning measured 0.85-1.06x the full sum; at 10, 0.60x)."""

    seed: int = 300
    probe: int = 20
    ratio: float = 2.0
    max_depth: int = 40
    enabled: bool = True  # False: every posting summed (sql.sum_postings), for comparison

    def prunes(self, depth: int) -> bool:
        return self.enabled and depth <= self.max_depth

    def params(self, depth: int) -> dict[str, Any]:
        return {"seed": max(self.seed, 4 * depth), "probe": self.probe, "ratio": self.ratio}


@dataclass(frozen=True)
class QueryTerms:
    lexemes: list[str]
    idf: list[float]
    df: list[int]  # chunks holding each lexeme
    avgdl: float


def idf(chunks: int, df: int) -> float:
    return math.log(1 + (chunks - df + 0.5) / (df + 0.5))


async def _hits(conn: Connection, statement: Any, params: dict[str, Any]) -> list[SearchHit]:
    rows = await (await conn.execute(statement, params)).fetchall()
    return [SearchHit(r[0], float(r[1]), r[2], r[3] or {}, r[4]) for r in rows]


class Bm25:
    def __init__(self, collection: CollectionHandle) -> None:
        self._chunks = collection
        self._db = collection.database
        self._name = collection.name
        self._table = collection.table
        self._config = collection.text_config
        # Sharded tables have no postings (statistics come from the write path): scored over
        # the chunks the GIN index matches, on every shard.
        self._posted = not collection.layout.distributed
        self.pruning = Pruning()

    @retry_elsewhere
    async def search(
        self, text: str, *, limit: int, filter_: dict[str, Any] | None = None
    ) -> list[SearchHit]:
        """The `limit` best chunks by BM25 (larger is better). Plain words match any of them;
        a query with "phrases" or -exclusions keeps websearch semantics. A query of stop words
        or punctuation alone has no lexemes and finds nothing."""
        condition, params = compile_filter(filter_)
        params |= {
            "collection": self._name,
            "text": text,
            "config": self._config,
            "k1": K1,
            "b": B,
            "limit": limit,
        }
        websearch = bool(_WEBSEARCH_SYNTAX.search(text))
        if websearch or not self._posted:
            return await self._search_matched(condition, params, websearch=websearch)
        # The `depth` best by score, then the filter: a filter that leaves fewer than `limit`
        # of them sends the search deeper, until every posted chunk was scored.
        depth = limit if filter_ is None else limit * _FILTER_DEPTH
        async with self._db.reading() as conn:
            hits = await self._best(conn, condition, params, depth)
            if len(hits) >= limit or filter_ is None:
                return hits
            terms = await self._terms(conn, text)
            posted = sum(terms.df) if terms else 0  # the chunks posted for the query, at most
            while len(hits) < limit and depth < posted:
                depth *= _FILTER_DEPTH
                hits = await self._best(conn, condition, params, depth)
            return hits

    async def _best(
        self, conn: Connection, condition: Any, params: dict[str, Any], depth: int
    ) -> list[SearchHit]:
        """The `depth` best chunks by score (pruned when that pays), then those the filter
        keeps."""
        if self.pruning.prunes(depth):
            statement = sql.score_postings(self._table, condition)
            params = params | self.pruning.params(depth)
        else:
            statement = sql.sum_postings(self._table, condition)
        return await _hits(conn, statement, params | {"depth": depth})

    async def _search_matched(
        self, condition: Any, params: dict[str, Any], *, websearch: bool
    ) -> list[SearchHit]:
        """Scored over the chunks the GIN index matches (phrases and exclusions need each
        chunk's positions; sharded tables have no postings), with the statistics read first
        (one snapshot for both)."""
        async with self._db.reading() as conn, conn.transaction():
            terms = await self._terms(conn, params["text"])
            if terms is None:
                return []
            params |= {
                "lexemes": terms.lexemes,
                "idf": terms.idf,
                "avgdl": terms.avgdl,
            }
            statement = sql.score_matched(self._table, condition, websearch=websearch)
            return await _hits(conn, statement, params)

    async def _terms(self, conn: Connection, text: str) -> QueryTerms | None:
        """The query's lexemes that some chunk holds, with their idf; None when there is none."""
        statement, params = (
            sql.QUERY_STATISTICS,
            {
                "collection": self._name,
                "config": self._config,
                "text": text,
            },
        )
        rows = await (await conn.execute(statement, params)).fetchall()
        totals = {lexeme: (int(df), int(length)) for lexeme, df, length in rows}
        chunks, length = totals.pop("", (0, 0))
        present = sorted(lexeme for lexeme, (df, _) in totals.items() if df > 0)
        if chunks <= 0 or not present:
            return None
        return QueryTerms(
            present,
            [idf(chunks, totals[lexeme][0]) for lexeme in present],
            [totals[lexeme][0] for lexeme in present],
            max(length / chunks, 1.0),
        )

    async def compact(self) -> None:
        """Fold the statistics' deltas into their base (skipped if another process is at it)."""
        params = {"collection": self._name}
        async with self._db.writing() as conn:
            locked = await (await conn.execute(sql.TRY_LOCK_COMPACTION, params)).fetchone()
            if locked and locked[0]:
                await conn.execute(sql.COMPACT, params)
                await conn.execute(sql.DROP_ABSENT_LEXEMES, params)


class Compactions:
    """Counts this process's writes per collection and compacts every COMPACT_EVERY_WRITES."""

    def __init__(self) -> None:
        self._writes: dict[str, int] = {}

    async def wrote(self, collection: CollectionHandle) -> None:
        """After a write has committed."""
        count = self._writes.get(collection.table, 0) + 1
        self._writes[collection.table] = count % COMPACT_EVERY_WRITES
        if count >= COMPACT_EVERY_WRITES:
            await collection.bm25.compact()

"""Lexical search ranked by BM25, exact, over one collection's chunks.

Lucene's BM25 (k1 1.2, b 0.75; idf = ln(1 + (N - df + 0.5) / (df + 0.5))) over the lexemes of
the collection's text search configuration. Exact top-k with MaxScore pruning: a lexeme adds at
most idf * (k1 + 1) to a chunk's score, so once `limit` real scores are known (from the chunks
holding the rarest lexemes), lexemes whose bounds together stay below the k-th of them cannot
lift a chunk holding only those into the top k, and only chunks holding one of the others are
scored. Common words then cost little on large collections.
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


@dataclass(frozen=True)
class QueryTerms:
    lexemes: list[str]
    idf: list[float]
    df: list[int]  # chunks holding each lexeme
    avgdl: float

    def bound(self, i: int) -> float:
        """The most lexeme i can add to a chunk's score (tf -> infinity)."""
        return self.idf[i] * (K1 + 1)


def idf(chunks: int, df: int) -> float:
    return math.log(1 + (chunks - df + 0.5) / (df + 0.5))


class Bm25:
    def __init__(self, collection: CollectionHandle) -> None:
        self._chunks = collection
        self._db = collection.database
        self._name = collection.name
        self._table = collection.table
        self._config = collection.text_config

    @retry_elsewhere
    async def search(
        self, text: str, *, limit: int, filter_: dict[str, Any] | None = None
    ) -> list[SearchHit]:
        """The `limit` best chunks by BM25 (larger is better). Plain words match any of them;
        a query with "phrases" or -exclusions keeps websearch semantics. A query of stop words
        or punctuation alone has no lexemes and finds nothing."""
        condition, params = compile_filter(filter_)
        websearch = bool(_WEBSEARCH_SYNTAX.search(text))
        async with self._db.reading() as conn, conn.transaction():
            terms = await self._terms(conn, text)
            if terms is None:
                return []
            params |= {
                "text": text,
                "config": self._config,
                "lexemes": terms.lexemes,
                "idf": terms.idf,
                "avgdl": terms.avgdl,
                "k1": K1,
                "b": B,
                "limit": limit,
            }
            statement = sql.score(self._table, condition, websearch=websearch)

            async def scored(match: list[str]) -> list[SearchHit]:
                rows = await (await conn.execute(statement, params | {"match": match})).fetchall()
                return [SearchHit(r[0], float(r[1]), r[2], r[3] or {}, r[4]) for r in rows]

            order = sorted(range(len(terms.lexemes)), key=terms.bound, reverse=True)
            if websearch or len(order) == 1:
                return await scored(terms.lexemes)
            # A first top-k from the rarest lexemes (enough of them to hold `limit` chunks)
            # gives a score the k-th result must reach.
            rare, held = 0, 0
            while rare < len(order) - 1 and held < limit:
                held += terms.df[order[rare]]
                rare += 1
            first = await scored([terms.lexemes[i] for i in order[:rare]])
            threshold = first[-1].score if len(first) == limit else 0.0
            essential, spare = list(order), 0.0
            while len(essential) > rare and spare + terms.bound(essential[-1]) < threshold:
                spare += terms.bound(essential.pop())
            if len(essential) == rare:
                return first
            return await scored([terms.lexemes[i] for i in essential])

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

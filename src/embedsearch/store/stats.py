"""Readings for /metrics: the connection pool's state and the catalog's estimates."""

from __future__ import annotations

from dataclasses import dataclass

from embedsearch.store.database import Database
from embedsearch.store.sql import metrics as sql


@dataclass(frozen=True)
class PoolStats:
    in_use: int
    idle: int
    waiting: int  # requests waiting for a connection


@dataclass(frozen=True)
class CatalogStats:
    collection_rows: dict[str, int]  # planner's estimate per collection
    index_builds: int  # CREATE INDEX in progress in this database


class StoreStats:
    def __init__(self, database: Database) -> None:
        self._db = database

    def pool(self) -> PoolStats:
        """From the pool's own counters: no I/O."""
        # Database keeps its pool private; a stats() method there would be its tidier home.
        stats = self._db._pool.get_stats()
        size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
        return PoolStats(max(size - idle, 0), idle, stats.get("requests_waiting", 0))

    async def catalog(self) -> CatalogStats:
        # The primary's: index builds run there, and its catalog is the newest.
        async with self._db.reading(primary=True) as conn:
            rows = await (await conn.execute(sql.COLLECTION_ROWS)).fetchall()
            builds = await (await conn.execute(sql.INDEX_BUILDS_IN_PROGRESS)).fetchone()
        return CatalogStats(
            {str(name): int(count or 0) for name, count in rows},
            int(builds[0]) if builds else 0,
        )

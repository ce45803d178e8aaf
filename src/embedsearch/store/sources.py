"""The source registry in the service database: what each source reads, and how far it got."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from embedsearch.store.database import Connection, Database
from embedsearch.store.sql import sources as sql


@dataclass(frozen=True)
class SourceSpec:
    """What a source reads: a table's rows become documents of `collection`."""

    name: str
    url: str | None  # a secret; None: the service's own database
    schema: str
    table: str
    id_column: str
    text_columns: tuple[str, ...]
    metadata_columns: tuple[str, ...]
    row_filter: str | None
    collection: str


@dataclass(frozen=True)
class SourceRecord:
    spec: SourceSpec
    phase: str  # 'backfill' or 'live'
    backfill_cursor: str | None
    backfill_done: int
    backfill_total: int | None
    rows_synced: int
    rows_deleted: int
    rows_skipped: int
    chunks_embedded: int
    rows_per_second: float
    embeds_per_second: float
    last_error: str | None
    last_error_at: datetime | None
    last_synced_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class BatchResult:
    """What one batch stored (recorded after its documents committed)."""

    synced: int = 0
    deleted: int = 0
    skipped: int = 0
    embedded: int = 0
    backfilled: int = 0
    cursor: str | None = None  # the backfill's new position
    skip_error: str | None = None  # why rows were skipped (kept as the last error)


def _record(row: Sequence[Any]) -> SourceRecord:
    spec = SourceSpec(
        name=str(row[0]),
        url=None if row[1] is None else str(row[1]),
        schema=str(row[2]),
        table=str(row[3]),
        id_column=str(row[4]),
        text_columns=tuple(row[5]),
        metadata_columns=tuple(row[6]),
        row_filter=None if row[7] is None else str(row[7]),
        collection=str(row[8]),
    )
    return SourceRecord(spec, *row[9:])


class SourceRegistry:
    """Reads go to the primary even in a read request's scope: sync workers write this state
    (cursors, counters, errors) as they go, and what a replica has not replayed yet would
    send a worker back or show a stale status."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def get(self, name: str) -> SourceRecord | None:
        async with self._db.reading(primary=True) as conn:
            row = await (await conn.execute(sql.GET_SOURCE, (name,))).fetchone()
        return None if row is None else _record(row)

    async def names(self) -> list[str]:
        async with self._db.reading(primary=True) as conn:
            return [str(r[0]) for r in await (await conn.execute(sql.SOURCE_NAMES)).fetchall()]

    async def register(self, spec: SourceSpec, total: int) -> bool:
        """False if the name is taken."""
        params = (
            spec.name,
            spec.url,
            spec.schema,
            spec.table,
            spec.id_column,
            list(spec.text_columns),
            list(spec.metadata_columns),
            spec.row_filter,
            spec.collection,
            total,
        )
        async with self._db.writing() as conn:
            return await (await conn.execute(sql.REGISTER_SOURCE, params)).fetchone() is not None

    async def unregister(self, name: str) -> bool:
        async with self._db.writing() as conn:
            return await (await conn.execute(sql.UNREGISTER_SOURCE, (name,))).fetchone() is not None

    async def record_batch(
        self, name: str, result: BatchResult, rows_per_second: float, embeds_per_second: float
    ) -> None:
        params = {
            "name": name,
            "cursor": result.cursor,
            "backfilled": result.backfilled,
            "synced": result.synced,
            "deleted": result.deleted,
            "skipped": result.skipped,
            "embedded": result.embedded,
            "rows_per_second": rows_per_second,
            "embeds_per_second": embeds_per_second,
            "skip_error": result.skip_error,
        }
        async with self._db.writing() as conn:
            await conn.execute(sql.RECORD_BATCH, params)

    async def finish_backfill(self, name: str) -> None:
        async with self._db.writing() as conn:
            await conn.execute(sql.FINISH_BACKFILL, (name,))

    async def record_error(self, name: str, message: str | None) -> None:
        """`None` clears it (the source answers again)."""
        async with self._db.writing() as conn:
            if message is None:
                await conn.execute(sql.CLEAR_ERROR, (name,))
            else:
                await conn.execute(sql.RECORD_ERROR, (message, name))

    async def worker_running(self, name: str) -> bool:
        """Whether some process holds this source's sync lock."""
        async with self._db.reading(primary=True) as conn:
            cur = await conn.execute(sql.WORKER_RUNNING, (sql.SOURCE_LOCK_CLASS, name))
            row = await cur.fetchone()
        return bool(row and row[0])

    @staticmethod
    async def check_alive(conn: Connection) -> None:
        """A round trip on the lock's connection: if it died, the lock went with it."""
        await conn.execute(sql.ALIVE)

    @staticmethod
    async def try_lock(conn: Connection, name: str) -> bool:
        """On a dedicated connection: the source's sync lock, held until the connection ends."""
        row = await (
            await conn.execute(sql.TRY_LOCK_SOURCE, (sql.SOURCE_LOCK_CLASS, name))
        ).fetchone()
        return bool(row and row[0])

    async def list(self) -> list[SourceRecord]:
        async with self._db.reading(primary=True) as conn:
            rows = await (await conn.execute(sql.LIST_SOURCES)).fetchall()
        return [_record(row) for row in rows]

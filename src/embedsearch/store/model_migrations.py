"""Model migrations in the store: their records, the capture of the old collection's changes,
the shadow's writes, and the switch (see sql/model_migrations.py for the design)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from embedsearch.core.errors import Conflict
from embedsearch.store.collection import CollectionHandle
from embedsearch.store.database import Connection, Database
from embedsearch.store.records import ChunkRows, CollectionOptions, CollectionRecord
from embedsearch.store.registry import Registry
from embedsearch.store.sql import chunks as chunks_sql
from embedsearch.store.sql import model_migrations as sql
from embedsearch.store.sql import registry as registry_sql
from embedsearch.store.sql.schema import LOCK_MIGRATIONS, MIGRATION_LOCK_ID

ACTIVE_STATES = ("backfill", "ready")


@dataclass(frozen=True)
class MigrationRecord:
    id: int
    name: str  # asked for by this name (a collection or an alias); it names the new one after
    source: str  # the collection migrated from
    target: str  # the shadow collection, filled with the new model's vectors
    embedder: str
    dimensions: int | None
    state: str  # backfill, ready, switched, cancelled, failed
    switch_asked: bool
    backfill_cursor: str
    backfill_done: int
    backfill_total: int
    applied: int  # captured changes applied to the shadow
    embedded: int  # chunks the new model embedded
    probe: dict[str, Any] | None  # {"sample": [...]} and/or {"judgments": {...}}
    comparison: dict[str, Any] | None
    archived_as: str | None  # the old collection's name after the switch, if it was renamed
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    switched_at: datetime | None
    capturing: bool  # writes to the old collection are queued (until the grace after a switch)
    pending: int  # captured changes not yet applied

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def working(self) -> bool:
        """Something is left to do: filling, or forwarding late writes after the switch."""
        return self.active or (self.state == "switched" and self.capturing)

    @property
    def source_now(self) -> str:
        """The old collection's name today (renamed by the switch if it was asked by it)."""
        return self.archived_as or self.source


@dataclass(frozen=True)
class StoredChunk:
    """A chunk of the old collection, as the shadow copies it."""

    chunk_id: str
    content: str | None
    content_hash: str | None
    metadata: dict[str, Any]
    document_id: str | None


@dataclass(frozen=True)
class ShadowWrite:
    """One batch for the shadow, written in one transaction with its bookkeeping."""

    rows: ChunkRows | None = None  # chunks the new model embedded
    relabeled: Sequence[StoredChunk] = ()  # text already embedded: metadata/document only
    deleted: Sequence[str] = ()  # gone from the old collection
    acknowledged: Sequence[int] = ()  # queue entries this batch applied
    cursor: str | None = None  # the backfill's new position (a backfill batch)


class ModelMigrations:
    def __init__(self, database: Database, registry: Registry) -> None:
        self._db = database
        self._registry = registry

    async def start(
        self,
        *,
        name: str,
        source: CollectionRecord,
        target: str,
        model: str,
        dimensions: int,
        embedder: str,
        asked_dimensions: int | None,
        switch: bool,
        probe: dict[str, Any] | None,
    ) -> MigrationRecord:
        """Create the shadow collection, the migration and the capture trigger in one
        transaction: every write to the old collection from its commit on is queued."""
        async with self._db.writing() as conn:
            await conn.execute(LOCK_MIGRATIONS, (MIGRATION_LOCK_ID,))
            cur = await conn.execute(sql.ACTIVE_OF_SOURCE, (source.name,))
            if await cur.fetchone() is not None:
                raise Conflict(
                    f"collection {source.name!r} is being migrated already: see GET "
                    f"/collections/{name}/migration, or cancel it (DELETE)",
                    field="collection",
                )
            options = CollectionOptions(
                distance=source.distance,
                storage=source.storage,
                normalized=source.normalized,
                text_config=source.text_config,
            )
            await self._registry.create_in(conn, target, model, dimensions, embedder, options)
            total = await (await conn.execute(chunks_sql.count_rows(source.table))).fetchone()
            row = await (
                await conn.execute(
                    sql.CREATE,
                    (
                        name,
                        source.name,
                        target,
                        embedder,
                        asked_dimensions,
                        switch,
                        int(total[0]) if total else 0,
                        Jsonb(probe) if probe else None,
                    ),
                )
            ).fetchone()
            assert row is not None  # RETURNING of an insert
            await conn.execute(sql.create_capture(source.table, int(row[0])))
            return await _get(conn, int(row[0]))

    @staticmethod
    async def try_lock(conn: Connection, migration_id: int) -> bool:
        """On a dedicated connection: the migration's worker lock, held until it ends."""
        row = await (await conn.execute(sql.LOCK_MIGRATION, (str(migration_id),))).fetchone()
        return bool(row and row[0])

    @staticmethod
    async def check_alive(conn: Connection) -> None:
        await conn.execute(sql.ALIVE)

    async def get(self, migration_id: int) -> MigrationRecord | None:
        async with self._db.reading(primary=True) as conn:
            row = await (await conn.execute(sql.GET, (migration_id,))).fetchone()
        return _record(row) if row else None

    async def latest(self, name: str) -> MigrationRecord | None:
        """The newest migration asked for by `name`, or from or to the collection it names."""
        async with self._db.reading(primary=True) as conn:
            row = await (await conn.execute(sql.LATEST, {"name": name})).fetchone()
        return _record(row) if row else None

    async def working(self) -> list[MigrationRecord]:
        """Migrations with work left (filling, or forwarding late writes after the switch)."""
        async with self._db.reading(primary=True) as conn:
            return [_record(r) for r in await (await conn.execute(sql.WORKING)).fetchall()]

    async def name_taken(self, name: str) -> bool:
        async with self._db.reading(primary=True) as conn:
            row = await (await conn.execute(sql.NAME_TAKEN, {"name": name})).fetchone()
        return bool(row and row[0])

    async def ask_switch(self, migration_id: int) -> None:
        async with self._db.writing() as conn:
            await conn.execute(sql.ASK_SWITCH, (migration_id,))

    async def record_error(self, migration_id: int, message: str | None) -> None:
        async with self._db.writing() as conn:
            await conn.execute(sql.RECORD_ERROR, (message, migration_id))

    async def mark_ready(self, migration_id: int, comparison: dict[str, Any]) -> None:
        async with self._db.writing() as conn:
            await conn.execute(sql.RECORD_READY, (Jsonb(comparison), migration_id))

    # Reading the old collection.

    async def backfill_batch(self, source: str, after: str, size: int) -> list[StoredChunk]:
        async with self._db.reading(primary=True) as conn:
            cur = await conn.execute(sql.backfill_batch(source), (after, size))
            return [StoredChunk(*row) for row in await cur.fetchall()]

    @staticmethod
    async def pending(
        conn: Connection, migration_id: int, size: int
    ) -> list[tuple[str, list[int]]]:
        """Changed chunk ids, oldest first, each with the queue entries it covers."""
        cur = await conn.execute(sql.PENDING, (migration_id, size))
        return [(str(r[0]), [int(s) for s in r[1]]) for r in await cur.fetchall()]

    @staticmethod
    async def read_chunks(conn: Connection, table: str, ids: Sequence[str]) -> list[StoredChunk]:
        cur = await conn.execute(sql.read_rows(table), (list(ids),))
        return [StoredChunk(*row) for row in await cur.fetchall()]

    @staticmethod
    async def hashes(conn: Connection, table: str, ids: Sequence[str]) -> dict[str, str | None]:
        cur = await conn.execute(sql.hashes(table), (list(ids),))
        return {str(r[0]): r[1] for r in await cur.fetchall()}

    # Writing the shadow.

    async def write(
        self, conn: Connection, migration_id: int, shadow: CollectionHandle, batch: ShadowWrite
    ) -> None:
        """A batch's chunks, its acknowledged queue entries and its progress, on `conn` (the
        caller's transaction): a crash before the commit applies the batch again."""
        embedded = 0
        if batch.rows is not None and len(batch.rows):
            await shadow.write_rows(conn, batch.rows)
            embedded = len(batch.rows)
        if batch.relabeled:
            await conn.execute(
                sql.update_metadata(shadow.table),
                (
                    [c.chunk_id for c in batch.relabeled],
                    [Jsonb(c.metadata) for c in batch.relabeled],
                    [c.document_id for c in batch.relabeled],
                ),
            )
        if batch.deleted:
            await conn.execute(sql.delete_rows(shadow.table), (list(batch.deleted),))
        if batch.acknowledged:
            await conn.execute(sql.ACKNOWLEDGE, (list(batch.acknowledged),))
        rows = embedded + len(batch.relabeled) + len(batch.deleted)
        progress = {"id": migration_id, "rows": rows, "embedded": embedded}
        if batch.cursor is not None:
            await conn.execute(sql.RECORD_BACKFILL, progress | {"cursor": batch.cursor})
        else:
            await conn.execute(sql.RECORD_APPLIED, progress)

    async def sample_texts(self, table: str, count: int) -> list[str]:
        async with self._db.reading(primary=True) as conn:
            cur = await conn.execute(sql.sample_texts(table), (count,))
            return [str(r[0]) for r in await cur.fetchall()]

    # Ending.

    async def switch(
        self,
        record: MigrationRecord,
        source: CollectionRecord,
        archive_as: str | None,
        drain: Callable[[Connection], Awaitable[None]],
    ) -> None:
        """In one transaction: lock the old collection against writes (searches go on), apply
        what is still queued (`drain`), copy the documents registry, move the aliases of the
        old collection to the new one, and if the migration was asked for by the collection's
        own name, rename the old collection to `archive_as` and make the name an alias of the
        new one. The capture goes on for a grace period (stop_capturing ends it): a request
        that looked the name up just before may still write to the old collection."""
        async with self._db.writing() as conn:
            await conn.execute(LOCK_MIGRATIONS, (MIGRATION_LOCK_ID,))
            await conn.execute(sql.lock_for_switch(source.table))
            await conn.execute(sql.LOCK_DOCUMENTS)
            await drain(conn)
            names = {"source": source.name, "target": record.target}
            await conn.execute(sql.CLEAR_DOCUMENTS, names)
            await conn.execute(sql.COPY_DOCUMENTS, names)
            await conn.execute(sql.MOVE_ALIASES, {"old": source.name, "new": record.target})
            if archive_as is not None:
                await self._registry.rename_in(conn, source, archive_as)
                await conn.execute(registry_sql.SET_ALIAS, (record.name, record.target))
            await self._end(conn, record, source.table, "switched", archive_as)

    async def cancel(self, record: MigrationRecord, source: CollectionRecord) -> None:
        """Stop capturing and drop the shadow collection; the old one is as it was."""
        async with self._db.writing() as conn:
            await conn.execute(LOCK_MIGRATIONS, (MIGRATION_LOCK_ID,))
            await self._registry.drop_in(conn, record.target)
            await self._end(conn, record, source.table, "cancelled", None)

    async def stop_capturing(self, record: MigrationRecord, source_table: str | None) -> None:
        """The end of the grace after a switch (None: the old collection was dropped)."""
        async with self._db.writing() as conn:
            if source_table is not None:
                await conn.execute(sql.drop_capture(source_table))
            await conn.execute(sql.DROP_QUEUE, (record.id,))
            await conn.execute(sql.STOP_CAPTURING, (record.id,))

    async def seconds_since_switch(self, migration_id: int) -> float | None:
        async with self._db.reading(primary=True) as conn:
            row = await (await conn.execute(sql.SINCE_SWITCH, (migration_id,))).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    async def _end(
        self,
        conn: Connection,
        record: MigrationRecord,
        source_table: str,
        state: str,
        archived: str | None,
    ) -> None:
        if state != "switched":
            await conn.execute(sql.drop_capture(source_table))
            await conn.execute(sql.DROP_QUEUE, (record.id,))
        await conn.execute(sql.FINISH, {"id": record.id, "state": state, "archived": archived})


async def _get(conn: Connection, migration_id: int) -> MigrationRecord:
    row = await (await conn.execute(sql.GET, (migration_id,))).fetchone()
    assert row is not None, migration_id  # written in this transaction
    return _record(row)


def _record(row: Sequence[Any]) -> MigrationRecord:
    return MigrationRecord(*row)

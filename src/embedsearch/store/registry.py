"""The collection registry: one row per collection, the only source of its table and layout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg.types.json import Jsonb

from embedsearch.core.constants import DEFAULT_COLLECTION, DEFAULT_TABLE
from embedsearch.core.distance import Distance
from embedsearch.core.errors import Conflict, ModelMismatch
from embedsearch.core.vector_index import Storage
from embedsearch.store.aliases import alias_target, aliases_of
from embedsearch.store.database import Connection, Database
from embedsearch.store.ddl import Ddl
from embedsearch.store.records import CitusInfo, CollectionOptions, CollectionRecord, TableLayout
from embedsearch.store.replicas import retry_elsewhere
from embedsearch.store.sql import bm25 as bm25_sql
from embedsearch.store.sql import model_migrations as mm_sql
from embedsearch.store.sql import registry as sql
from embedsearch.store.sql.schema import LOCK_MIGRATIONS, MIGRATION_LOCK_ID


def new_table_name(collection: str) -> str:
    """Chosen once, when the collection is created; from then on the registry says it."""
    return DEFAULT_TABLE if collection == DEFAULT_COLLECTION else f"c_{collection}"


class Registry:
    def __init__(self, database: Database, ddl: Ddl) -> None:
        self._db = database
        self._ddl = ddl

    @retry_elsewhere
    async def get(self, name: str) -> CollectionRecord | None:
        async with self._db.reading() as conn:
            return await _get(conn, name)

    @retry_elsewhere
    async def find(self, name: str) -> CollectionRecord | None:
        """The collection called `name`, or the one the alias `name` points at."""
        async with self._db.reading() as conn:
            row = await (await conn.execute(sql.FIND_COLLECTION, {"name": name})).fetchone()
        return _record(row) if row else None

    @retry_elsewhere
    async def list(self) -> list[CollectionRecord]:
        async with self._db.reading() as conn:
            rows = await (await conn.execute(sql.LIST_COLLECTIONS)).fetchall()
        return [_record(row) for row in rows]

    async def create(
        self, name: str, *, model: str, dimensions: int, embedder: str, options: CollectionOptions
    ) -> CollectionRecord:
        async with self._db.writing() as conn:
            await conn.execute(LOCK_MIGRATIONS, (MIGRATION_LOCK_ID,))
            if await _get(conn, name) is not None:
                raise Conflict(f"collection {name!r} already exists", field="name")
            return await self.create_in(conn, name, model, dimensions, embedder, options)

    async def ensure_default(
        self, *, model: str, dimensions: int, embedder: str | None
    ) -> CollectionRecord:
        """The brief's collection: created on first start, and refused if another model or
        dimension filled it (vectors of different models cannot be mixed)."""
        async with self._db.writing() as conn:
            await conn.execute(LOCK_MIGRATIONS, (MIGRATION_LOCK_ID,))
            existing = await _get(conn, DEFAULT_COLLECTION)
            if existing is None:
                await _check_unregistered_table(conn, DEFAULT_TABLE, model, dimensions)
                return await self.create_in(
                    conn, DEFAULT_COLLECTION, model, dimensions, embedder, CollectionOptions()
                )
            _check_same_model(existing, model, dimensions)
            if existing.embedder is None and embedder is not None:
                await conn.execute(sql.FILL_EMBEDDER, (embedder, DEFAULT_COLLECTION))
                return await _get_existing(conn, DEFAULT_COLLECTION)
            return existing

    async def drop(self, name: str) -> bool:
        async with self._db.writing() as conn:
            await conn.execute(LOCK_MIGRATIONS, (MIGRATION_LOCK_ID,))
            record = await _get(conn, name)
            if record is None:
                return False
            migrating = await (await conn.execute(sql.MIGRATIONS_OF, (name, name))).fetchone()
            if migrating is not None:
                raise Conflict(
                    f"collection {name!r} is in a model migration (from {migrating[0]!r} to "
                    f"{migrating[1]!r}): cancel it first (DELETE /collections/{name}/migration)",
                    field="name",
                )
            await self.drop_in(conn, name, record)
            return True

    async def drop_in(
        self, conn: Connection, name: str, record: CollectionRecord | None = None
    ) -> None:
        """Drop inside the caller's transaction, which holds the migration lock."""
        record = record or await _get_existing(conn, name)
        aliases = await aliases_of(conn, name)
        if aliases:
            raise Conflict(
                f"collection {name!r} is named by the aliases {', '.join(aliases)}: point"
                " them elsewhere or drop them first",
                field="name",
            )
        await self._ddl.drop_chunk_table(conn, record.table)
        await conn.execute(sql.UNREGISTER_COLLECTION, (name,))
        for statement in (bm25_sql.DROP_STATISTICS, bm25_sql.DROP_DELTAS):
            await conn.execute(statement, {"collection": name})

    async def rename_in(self, conn: Connection, record: CollectionRecord, new_name: str) -> None:
        """Rename inside the caller's transaction (which holds the migration lock and has the
        collection's table locked against writes): its documents and aliases follow through
        their foreign keys; its BM25 statistics and triggers are keyed by name."""
        names = {"old": record.name, "new": new_name}
        await conn.execute(mm_sql.LOCK_COMPACTION, (record.name,))
        await conn.execute(mm_sql.RENAME_COLLECTION, names)
        for statement in (mm_sql.RENAME_STATISTICS, mm_sql.RENAME_DELTAS):
            await conn.execute(statement, names)
        if not record.layout.distributed:
            await conn.execute(bm25_sql.create_triggers(record.table, new_name, record.text_config))

    async def create_in(
        self,
        conn: Connection,
        name: str,
        model: str,
        dimensions: int,
        embedder: str | None,
        options: CollectionOptions,
    ) -> CollectionRecord:
        """Create inside the caller's transaction, which holds the migration lock."""
        target = await alias_target(conn, name)
        if target is not None:
            raise Conflict(f"{name!r} is an alias of collection {target!r}", field="name")
        table = new_table_name(name)
        layout = TableLayout(
            table, options.storage, options.normalized, options.distance, shards=options.shards
        )
        await self._ddl.create_chunk_table(conn, name, layout, dimensions, options)
        await conn.execute(
            sql.REGISTER_COLLECTION,
            (
                name,
                table,
                model,
                dimensions,
                embedder,
                options.distance.value,
                options.storage.value,
                options.normalized,
                options.text_config,
                options.shards,
            ),
        )
        return await _get_existing(conn, name)

    @retry_elsewhere
    async def text_config_exists(self, config: str) -> bool:
        async with self._db.reading() as conn:
            row = await (await conn.execute(sql.TEXT_CONFIG_EXISTS, (config,))).fetchone()
            return bool(row and row[0])

    async def citus(self) -> CitusInfo | None:
        """The Citus cluster behind the database; None when it is not a Citus coordinator."""
        async with self._db.reading() as conn:
            return await self._ddl.citus(conn)

    async def set_fusion(self, name: str, fusion: dict[str, Any] | None) -> None:
        """Store (or with None clear) a collection's default hybrid fusion."""
        async with self._db.writing() as conn:
            await conn.execute(sql.SET_FUSION, (Jsonb(fusion) if fusion else None, name))

    # Index bookkeeping, written in the transaction of the index change itself.

    async def record_index_build(
        self, conn: Connection, name: str, *, probes: int | None, rows: int | None
    ) -> None:
        await conn.execute(sql.RECORD_INDEX_BUILD, (probes, rows, name))

    async def record_deferred_index(
        self, conn: Connection, name: str, spec: dict[str, Any]
    ) -> None:
        await conn.execute(sql.DEFER_INDEX, (Jsonb(spec), name))


async def _get(conn: Connection, name: str) -> CollectionRecord | None:
    row = await (await conn.execute(sql.GET_COLLECTION, (name,))).fetchone()
    return _record(row) if row else None


async def _get_existing(conn: Connection, name: str) -> CollectionRecord:
    record = await _get(conn, name)
    assert record is not None, name  # written in this transaction
    return record


def _record(row: Sequence[Any]) -> CollectionRecord:
    name, table, model, dimensions, embedder, distance, created_at, storage, *index = row
    return CollectionRecord(
        name,
        table,
        model,
        dimensions,
        embedder,
        Distance(distance),
        created_at,
        Storage(storage),
        *index,
    )


async def _check_unregistered_table(
    conn: Connection, table: str, model: str, dimensions: int
) -> None:
    """A table made by other code (e.g. the brief's script): adopt it only if it matches."""
    row = await (await conn.execute(sql.VECTOR_COLUMN_DIMENSIONS, (table,))).fetchone()
    if row is None:
        return
    if row[0] != dimensions:
        raise ModelMismatch(
            f"table {table} holds {row[0]}-dimensional vectors but the configured "
            f"embedder makes {dimensions}; use another database or the matching embedder"
        )
    cur = await conn.execute(sql.other_models(table), (model,))
    others = [r[0] for r in await cur.fetchall()]
    if others:
        raise ModelMismatch(f"table {table} holds vectors from {', '.join(others)}, not {model}")


def _check_same_model(stored: CollectionRecord, model: str, dimensions: int) -> None:
    if (stored.model, stored.dimensions) != (model, dimensions):
        raise ModelMismatch(
            f"this database was filled by {stored.model} ({stored.dimensions} dims) but the "
            f"configured embedder is {model} ({dimensions} dims); vectors from different models "
            "cannot be mixed. Use the same EMBEDSEARCH_EMBEDDER/EMBEDSEARCH_DIMENSIONS, or another "
            "database"
        )

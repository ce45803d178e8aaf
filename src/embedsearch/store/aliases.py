"""Aliases: other names for collections, re-pointed atomically (a client that searches by an
alias follows it to a new collection without any change of its own)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from embedsearch.core.errors import Conflict, InvalidInput, NotFound
from embedsearch.store.database import Connection, Database
from embedsearch.store.replicas import retry_elsewhere
from embedsearch.store.sql import registry as sql
from embedsearch.store.sql.schema import LOCK_MIGRATIONS, MIGRATION_LOCK_ID


@dataclass(frozen=True)
class AliasRecord:
    name: str
    collection: str
    updated_at: datetime


class Aliases:
    def __init__(self, database: Database) -> None:
        self._db = database

    @retry_elsewhere
    async def list(self) -> list[AliasRecord]:
        async with self._db.reading() as conn:
            rows = await (await conn.execute(sql.LIST_ALIASES)).fetchall()
        return [AliasRecord(*row) for row in rows]

    @retry_elsewhere
    async def get(self, name: str) -> AliasRecord | None:
        async with self._db.reading() as conn:
            row = await (await conn.execute(sql.GET_ALIAS, (name,))).fetchone()
        return AliasRecord(*row) if row else None

    async def set(self, name: str, collection: str) -> tuple[AliasRecord, str | None]:
        """Point `name` at `collection` (made, or moved in one statement); returns the alias
        and the collection it named before, if any."""
        async with self._db.writing() as conn:
            # The lock collections are created under: a name is an alias or a collection, never
            # both, even when both are asked for at once.
            await conn.execute(LOCK_MIGRATIONS, (MIGRATION_LOCK_ID,))
            if await _is_collection(conn, name):
                raise Conflict(
                    f"{name!r} is a collection; an alias cannot take its name", field="name"
                )
            if not await _is_collection(conn, collection):
                if await alias_target(conn, collection) is not None:
                    raise InvalidInput(
                        f"{collection!r} is an alias; name the collection itself",
                        field="collection",
                    )
                raise NotFound(f"collection {collection!r} does not exist", field="collection")
            before = await (await conn.execute(sql.LOCK_ALIAS, (name,))).fetchone()
            row = await (await conn.execute(sql.SET_ALIAS, (name, collection))).fetchone()
            assert row is not None  # RETURNING of an upsert
            return AliasRecord(*row), (str(before[1]) if before else None)

    async def drop(self, name: str) -> str | None:
        """Remove an alias (its collection stays); returns the collection it named."""
        async with self._db.writing() as conn:
            row = await (await conn.execute(sql.DROP_ALIAS, (name,))).fetchone()
        return str(row[0]) if row else None


async def _is_collection(conn: Connection, name: str) -> bool:
    return await (await conn.execute(sql.GET_COLLECTION, (name,))).fetchone() is not None


async def alias_target(conn: Connection, name: str) -> str | None:
    row = await (await conn.execute(sql.GET_ALIAS, (name,))).fetchone()
    return str(row[1]) if row else None


async def aliases_of(conn: Connection, collection: str) -> list[str]:
    return [str(r[0]) for r in await (await conn.execute(sql.ALIASES_OF, (collection,))).fetchall()]

"""A source database, reached by URL: checks a table before anything is created, installs and
removes change capture, reads rows and queued changes, and acknowledges what was stored.

Every read that carries the user's row filter runs in a READ ONLY transaction, so the filter
cannot write, whatever it calls. Connections are short-lived, one per job: a source may be
down between two jobs and the worker simply connects again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from embedsearch.core.errors import SourceUnavailable
from embedsearch.store.database import Connection, first_line
from embedsearch.store.sql import source_capture as sql
from embedsearch.store.sql.source_capture import Capture

__all__ = ["Capture", "Change", "RowDocument", "SourceDatabase", "TableFacts"]


@dataclass(frozen=True)
class TableFacts:
    """What the catalog says about a table, for the checks of core/sources.py."""

    oid: int | None  # None: no such table
    kind: str | None  # pg_class.relkind
    columns: dict[str, tuple[str, str]]  # name -> (type category, declared type)
    id_unique: bool
    can_select: bool
    can_trigger: bool
    can_create: bool  # in the table's schema: the queue and function go there
    existing: list[str]  # capture objects of this name already there


@dataclass(frozen=True)
class RowDocument:
    """A row as a document: None text when the row is gone or the filter no longer takes it."""

    row_id: str
    text: str | None
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Change:
    seq: int
    row_id: str


class SourceDatabase:
    def __init__(self, conninfo: str, *, timeout_s: float, redact: Callable[[str], str]) -> None:
        self._conninfo = conninfo
        self._timeout = max(1, round(timeout_s))
        self.redact = redact  # masks the URL's password in messages

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Connection]:
        """A connection of its own (autocommit); failures as SourceUnavailable, in words that
        never carry the password."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=self._timeout
            )
        except (psycopg.Error, ValueError) as exc:
            raise SourceUnavailable(
                f"cannot connect to the source database: {self.redact(first_line(exc))}"
            ) from None
        try:
            async with conn:
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise SourceUnavailable(
                f"the source database failed: {self.redact(first_line(exc))}"
            ) from None

    async def current_schema(self, conn: Connection) -> str:
        row = await (await conn.execute(sql.CURRENT_SCHEMA)).fetchone()
        return str(row[0]) if row and row[0] else "public"

    async def inspect(self, conn: Connection, capture: Capture) -> TableFacts:
        row = await (await conn.execute(sql.FIND_TABLE, (capture.schema, capture.table))).fetchone()
        if row is None:
            return TableFacts(None, None, {}, False, False, False, False, [])
        oid, kind = int(row[0]), str(row[1])
        cur = await conn.execute(sql.TABLE_COLUMNS, (oid,))
        columns = {str(r[0]): (str(r[1]), str(r[2])) for r in await cur.fetchall()}
        unique = await (await conn.execute(sql.UNIQUE_COLUMN, (oid, capture.id_column))).fetchone()
        rights = await (await conn.execute(sql.PRIVILEGES, (oid, oid, capture.schema))).fetchone()
        assert rights is not None
        names = {
            "schema": capture.schema,
            "queue": capture.queue,
            "function": capture.function,
            "table": oid,
            "trigger": capture.trigger,
        }
        existing = [
            str(r[0]) for r in await (await conn.execute(sql.EXISTING_OBJECTS, names)).fetchall()
        ]
        return TableFacts(
            oid,
            kind,
            columns,
            id_unique=bool(unique and unique[0]),
            can_select=bool(rights[0]),
            can_trigger=bool(rights[1]),
            can_create=bool(rights[2]),
            existing=existing,
        )

    async def check_filter(self, conn: Connection, capture: Capture) -> str | None:
        """The database's objection to the row filter, or None: planned, never run."""
        try:
            async with conn.transaction(force_rollback=True):
                await conn.execute(sql.READ_ONLY)
                await conn.execute(sql.explain_filter(capture), (1,))
        except psycopg.DatabaseError as exc:
            if isinstance(exc, psycopg.OperationalError):
                raise
            return self.redact(first_line(exc))
        return None

    async def count_rows(self, conn: Connection, capture: Capture) -> int:
        async with conn.transaction():
            await conn.execute(sql.READ_ONLY)
            row = await (await conn.execute(sql.count_rows(capture), ())).fetchone()
        return int(row[0]) if row else 0

    async def install(self, conn: Connection, capture: Capture) -> None:
        """Queue, function and trigger in one transaction: all of them, or none."""
        async with conn.transaction():
            await conn.execute(sql.LOCK_TIMEOUT)
            for statement in sql.install(capture):
                await conn.execute(statement)

    async def uninstall(self, conn: Connection, capture: Capture) -> None:
        async with conn.transaction():
            await conn.execute(sql.LOCK_TIMEOUT)
            table = await (
                await conn.execute(sql.FIND_TABLE, (capture.schema, capture.table))
            ).fetchone()
            statements = sql.uninstall(capture)
            for statement in statements if table is not None else statements[1:]:
                await conn.execute(statement)

    async def backfill_batch(
        self, conn: Connection, capture: Capture, after: str | None, size: int
    ) -> list[RowDocument]:
        statement = sql.backfill_batch(capture, after=after is not None)
        params = (size,) if after is None else (after, size)
        async with conn.transaction():
            await conn.execute(sql.READ_ONLY)
            rows = await (await conn.execute(statement, params)).fetchall()
        return [RowDocument(str(r[0]), r[1] or None, r[2] or {}) for r in rows]

    async def changes(
        self, conn: Connection, capture: Capture, size: int
    ) -> tuple[list[Change], list[RowDocument]]:
        """The oldest queued changes, and the current version of their rows (one snapshot)."""
        async with conn.transaction():
            await conn.execute(sql.SNAPSHOT_READ_ONLY)
            cur = await conn.execute(sql.pending_changes(capture), (size,))
            changes = [Change(int(r[0]), str(r[1])) for r in await cur.fetchall()]
            if not changes:
                return [], []
            seqs = [c.seq for c in changes]
            rows = await (await conn.execute(sql.current_rows(capture), (seqs,))).fetchall()
        return changes, [RowDocument(str(r[0]), r[1] or None, r[2] or {}) for r in rows]

    async def acknowledge(self, conn: Connection, capture: Capture, seqs: Sequence[int]) -> None:
        await conn.execute(sql.acknowledge(capture), (list(seqs),))

    async def queue_status(self, conn: Connection, capture: Capture) -> tuple[int, float]:
        row = await (await conn.execute(sql.queue_status(capture))).fetchone()
        return (int(row[0]), float(row[1])) if row else (0, 0.0)

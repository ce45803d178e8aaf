"""Connections to PostgreSQL: the one place that decides which connection a statement uses.

Reads (searches, lookups) go through `reading()`, writes through `transaction(work)` (one
transaction, run again when PostgreSQL aborted it for a deadlock or a serialization failure) or
`writing()` (one transaction, once), and statements that cannot run inside a transaction (CREATE
INDEX CONCURRENTLY) through `dedicated()`. Writes and dedicated connections use the primary;
reads use it too, unless read replicas are configured and the read runs inside
`replica_reads()` (store/replicas.py says which replica then serves it). A store read that
may run on a replica is decorated with `retry_elsewhere`: run again on another server when its
replica goes away in the middle of it (without it, that read gets a 503, as on an outage).

Pooled connections are in autocommit mode: a read of one statement is one round trip (no BEGIN,
no ROLLBACK when the connection goes back); reads that need one snapshot or transaction-local
settings open a transaction (`reading(settings)`, or `conn.transaction()`).

With replicas, every commit's WAL position is read after it on its connection and the newest
is kept (`last_commit_lsn`): a read given it sees that write (read-your-writes). Without
replicas nothing of this runs: no statement is added anywhere.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg

from embedsearch.core.constants import DEFAULT_WRITE_RETRIES
from embedsearch.core.errors import WriteConflict
from embedsearch.store.lsn import format_lsn, parse_lsn
from embedsearch.store.pool import (
    Connection,
    ServerPool,
    connect_timeout,
    database_errors,
    first_line,
)
from embedsearch.store.replicas import ReplicaOptions, Replicas, ReplicaStatus, read_scope
from embedsearch.store.sql import replicas as replicas_sql

__all__ = ["Connection", "Database", "Statement", "database_errors", "first_line"]

log = logging.getLogger(__name__)

T = TypeVar("T")
# A statement and its parameters, e.g. a transaction-local setting.
Statement = tuple[psycopg.sql.SQL | psycopg.sql.Composed, Sequence[Any] | None]


class Database:
    """A connection pool to the primary, opened after the schema is migrated, and one to each
    read replica when there are any."""

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout_s: float = 5.0,
        write_retries: int = DEFAULT_WRITE_RETRIES,
        session_settings: Mapping[str, str] | None = None,
        replicas: ReplicaOptions | None = None,
    ) -> None:
        self._conninfo = conninfo
        self._write_retries = write_retries
        self._timeout_s = timeout_s
        settings = dict(session_settings or {})
        self._primary = ServerPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            timeout_s=timeout_s,
            session_settings=settings,
        )
        self._pool = self._primary.pool  # store/stats.py reads its counters
        self._commit_lsn: int | None = None

        def replica_pool(url: str, checkout_timeout_s: float) -> ServerPool:
            # No minimum: a replica that is down then has no reconnect loop of its own (its
            # health check notices it is back); the session defaults are the primary's.
            return ServerPool(
                url,
                min_size=0,
                max_size=max_size,
                timeout_s=checkout_timeout_s,
                session_settings=settings,
            )

        self._replicas = (
            Replicas(replicas, primary_url=conninfo, pool=replica_pool, timeout_s=timeout_s)
            if replicas is not None and replicas.urls
            else None
        )

    @property
    def conninfo(self) -> str:
        """The primary's connection string (a secret: it may hold the password)."""
        return self._conninfo

    async def open(self) -> None:
        await self._primary.open()
        if self._replicas is not None:
            await self._replicas.open()

    async def close(self) -> None:
        if self._replicas is not None:
            await self._replicas.close()
        await self._primary.close()

    @property
    def replicated(self) -> bool:
        return self._replicas is not None

    @property
    def last_commit_lsn(self) -> str | None:
        """The WAL position of the newest commit this process made (with replicas only): a
        read inside `replica_reads(parse_lsn(it))` sees that write and all before it."""
        return None if self._commit_lsn is None else format_lsn(self._commit_lsn)

    def replica_statuses(self) -> tuple[list[ReplicaStatus], int]:
        """Each replica's health, lag and reads served, and the reads the primary served in
        their place (none healthy, or none caught up with a read's position)."""
        if self._replicas is None:
            return [], 0
        return self._replicas.statuses(), self._replicas.primary_reads

    async def _note_commit(self, conn: Connection) -> None:
        """After a commit, on its connection (replicas only): keep its WAL position."""
        row = await (await conn.execute(replicas_sql.INSERT_POSITION)).fetchone()
        if row is not None:
            lsn = parse_lsn(row[0])
            self._commit_lsn = max(lsn, self._commit_lsn or 0)

    @asynccontextmanager
    async def reading(
        self, settings: Sequence[Statement] = (), *, primary: bool = False
    ) -> AsyncIterator[Connection]:
        """A pooled connection for reads. Each statement is its own transaction, unless
        `settings` are given: those (transaction-local settings) and the caller's statements
        then share one transaction. `primary`: on the primary whatever the scope says (what
        /readyz and /metrics report is the primary's)."""
        scope = None if self._replicas is None or primary else read_scope()
        source = (
            self._primary.connection()
            if scope is None or self._replicas is None
            else self._replicas.reading(scope.min_lsn, self._primary.connection)
        )
        async with source as conn:
            if not settings:
                yield conn
                return
            async with conn.transaction():
                for statement, params in settings:
                    await conn.execute(statement, params)
                yield conn

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[Connection]:
        """A pooled primary connection inside one transaction: all of it commits, or none."""
        async with self._primary.connection() as conn:
            async with conn.transaction():
                yield conn
            if self._replicas is not None:
                await self._note_commit(conn)

    async def transaction(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        """`work` in one transaction on the primary. PostgreSQL aborts one of two transactions
        that deadlock (or fail to serialize) and nothing of it is written, so it is run again,
        a bounded number of times, after a short random pause that splits the colliders up."""
        attempt = 0
        while True:
            try:
                async with self.writing() as conn:
                    return await work(conn)
            except WriteConflict:
                if attempt >= self._write_retries:
                    raise
                attempt += 1
                log.info("write collided with another; retrying (%d)", attempt)
                await asyncio.sleep(random.uniform(0.005, 0.02) * 2**attempt)

    @asynccontextmanager
    async def dedicated(self, *, autocommit: bool = True) -> AsyncIterator[Connection]:
        """A connection of its own to the primary, outside the pool: for statements that must
        not run in a transaction, and for session-level locks that end with the connection."""
        async with database_errors():
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=autocommit, connect_timeout=self._connect_timeout
            )
        async with conn, database_errors():
            yield conn
            if self._replicas is not None and autocommit:  # e.g. an index built and swapped
                await self._note_commit(conn)

    @property
    def _connect_timeout(self) -> int:
        return connect_timeout(self._timeout_s)

"""Connections to PostgreSQL: the one place that decides which connection a statement uses.

Reads (searches, lookups) go through `reading()`, writes through `transaction(work)` (one
transaction, run again when PostgreSQL aborted it for a deadlock or a serialization failure) or
`writing()` (one transaction, once), and statements that cannot run inside a transaction (CREATE
INDEX CONCURRENTLY) through `dedicated()`. Today all three use the primary; read replicas will
plug in behind `reading()`.

Pooled connections are in autocommit mode: a read of one statement is one round trip (no BEGIN,
no ROLLBACK when the connection goes back); reads that need one snapshot or transaction-local
settings open a transaction (`reading(settings)`, or `conn.transaction()`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
from pgvector.psycopg import register_vector_async
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from psycopg_pool.base import AttemptWithBackoff

from embedsearch.core.constants import DEFAULT_WRITE_RETRIES
from embedsearch.core.errors import DatabaseUnavailable, WorkerUnavailable, WriteConflict
from embedsearch.store.citus import unreachable_worker
from embedsearch.store.sql import search as search_sql

log = logging.getLogger(__name__)

Connection = psycopg.AsyncConnection[Any]
T = TypeVar("T")
# A statement and its parameters, e.g. a transaction-local setting.
Statement = tuple[psycopg.sql.SQL | psycopg.sql.Composed, Sequence[Any] | None]

# A pooled connection used within this long is handed out again without a check round trip;
# one idle longer is checked first (a server restart is then noticed before a request uses it).
_CHECK_IF_IDLE_S = 2.0


# PostgreSQL aborted the transaction for another's sake; run again, it can succeed. (psycopg's
# DeadlockDetected is an OperationalError, not a TransactionRollback.)
_COLLISIONS = (
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
    psycopg.errors.TransactionRollback,
)


# While the server is down the pool retries connecting with a backoff that doubles without end
# (after a minute's outage, a minute between tries); capped, it is back within a second.
_MAX_RECONNECT_DELAY_S = 1.0


class _CappedBackoff(AttemptWithBackoff):
    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, _MAX_RECONNECT_DELAY_S)


class _Pool(AsyncConnectionPool[Connection]):
    # psycopg_pool (pinned) has no setting for the backoff: its one retry hook, overridden.
    async def _add_connection(
        self, attempt: AttemptWithBackoff | None, growing: bool = False
    ) -> None:
        attempt = attempt or _CappedBackoff(timeout=self.reconnect_timeout)
        await super()._add_connection(attempt, growing)


@asynccontextmanager
async def database_errors() -> AsyncIterator[None]:
    """Turn connection-level failures into DatabaseUnavailable (HTTP 503; WorkerUnavailable
    naming the Citus worker when it is one's), and a transaction
    PostgreSQL aborted for a deadlock or a serialization failure into WriteConflict."""
    try:
        yield
    except _COLLISIONS as exc:
        raise WriteConflict(f"concurrent writes collided: {first_line(exc)}") from None
    except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
        raise _unavailable(exc) from None
    except psycopg.InternalError as exc:  # Citus: a worker's connection lost mid-statement
        if unreachable_worker(exc) is None:
            raise
        raise _unavailable(exc) from None


def _unavailable(exc: Exception) -> DatabaseUnavailable:
    worker = unreachable_worker(exc)
    if worker is not None:
        return WorkerUnavailable(worker, first_line(exc))
    return DatabaseUnavailable(f"database unavailable: {first_line(exc)}")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


class Database:
    """A connection pool to the primary, opened after the schema is migrated."""

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout_s: float = 5.0,
        write_retries: int = DEFAULT_WRITE_RETRIES,
        session_settings: Mapping[str, str] | None = None,
    ) -> None:
        self._conninfo = conninfo
        self._write_retries = write_retries
        self._timeout_s = timeout_s
        self._session_settings = dict(session_settings or {})
        self._failed_at = 0.0  # time.monotonic() of the last connection-level failure
        self._last_used: weakref.WeakKeyDictionary[Connection, float] = weakref.WeakKeyDictionary()
        self._pool = _Pool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout_s,
            open=False,
            configure=self._configure,
            check=self._check_if_idle,
            reset=self._note_use,
            kwargs={"connect_timeout": self._connect_timeout, "autocommit": True},
        )

    async def _configure(self, conn: Connection) -> None:
        """Once per new connection: pgvector's types, and the session's default settings (so
        that a request with the defaults sets nothing)."""
        await register_vector_async(conn)
        for name, value in self._session_settings.items():
            await conn.execute(search_sql.SET_SESSION_DEFAULT, (name, value))

    async def _check_if_idle(self, conn: Connection) -> None:
        """Check a connection idle for a while, or last used before a connection failed (the
        server may have restarted under it); skip the round trip for the rest."""
        used = self._last_used.get(conn, 0.0)
        if used < self._failed_at or time.monotonic() - used > _CHECK_IF_IDLE_S:
            await AsyncConnectionPool.check_connection(conn)

    async def _note_use(self, conn: Connection) -> None:
        self._last_used[conn] = time.monotonic()

    @property
    def _connect_timeout(self) -> int:
        return max(1, round(self._timeout_s))

    async def open(self) -> None:
        async with database_errors():
            await self._pool.open(wait=True, timeout=self._timeout_s)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        """A pooled connection; a connection-level failure marks every pooled connection as
        one to check before its next use."""
        try:
            async with database_errors(), self._pool.connection() as conn:
                yield conn
        except DatabaseUnavailable:
            self._failed_at = time.monotonic()
            raise

    @asynccontextmanager
    async def reading(self, settings: Sequence[Statement] = ()) -> AsyncIterator[Connection]:
        """A pooled connection for reads. Each statement is its own transaction, unless
        `settings` are given: those (transaction-local settings) and the caller's statements
        then share one transaction."""
        async with self._connection() as conn:
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
        async with self._connection() as conn, conn.transaction():
            yield conn

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

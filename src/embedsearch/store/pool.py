"""A connection pool to one PostgreSQL server (the primary, or a read replica).

Pooled connections are in autocommit mode. Each new one gets pgvector's types and the session's
default settings once; one idle for a while, or last used before a connection to its server
failed, is checked before it is handed out (a restarted server is then noticed before a request
uses it); reconnection is retried at least every second.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from pgvector.psycopg import register_vector_async
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from psycopg_pool.base import AttemptWithBackoff

from embedsearch.core.errors import DatabaseUnavailable, WorkerUnavailable, WriteConflict
from embedsearch.store.citus import unreachable_worker
from embedsearch.store.sql import search as search_sql

Connection = psycopg.AsyncConnection[Any]

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
    naming the Citus worker when it is one's), and a transaction PostgreSQL aborted for a
    deadlock or a serialization failure into WriteConflict."""
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


def connect_timeout(timeout_s: float) -> int:
    return max(1, round(timeout_s))


class ServerPool:
    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int,
        max_size: int,
        timeout_s: float,
        session_settings: Mapping[str, str],
    ) -> None:
        self._session_settings = dict(session_settings)
        self._timeout_s = timeout_s
        self.failed_at = 0.0  # time.monotonic() of the last connection-level failure
        self._last_used: weakref.WeakKeyDictionary[Connection, float] = weakref.WeakKeyDictionary()
        self.pool = _Pool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout_s,
            open=False,
            configure=self._configure,
            check=self._check_if_idle,
            reset=self._note_use,
            kwargs={"connect_timeout": connect_timeout(timeout_s), "autocommit": True},
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
        if used < self.failed_at or time.monotonic() - used > _CHECK_IF_IDLE_S:
            await AsyncConnectionPool.check_connection(conn)

    async def _note_use(self, conn: Connection) -> None:
        self._last_used[conn] = time.monotonic()

    async def open(self, *, wait: bool = True) -> None:
        async with database_errors():
            await self.pool.open(wait=wait, timeout=self._timeout_s)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection; a connection-level failure marks every pooled connection as
        one to check before its next use."""
        try:
            async with database_errors(), self.pool.connection() as conn:
                yield conn
        except DatabaseUnavailable:
            self.failed_at = time.monotonic()
            raise

"""Connections to PostgreSQL: the one place that decides which connection a statement uses.

Reads (searches, lookups) go through `reading()`, writes through `transaction(work)` (one
transaction, run again when PostgreSQL aborted it for a deadlock or a serialization failure) or
`writing()` (one transaction, once), and statements that cannot run inside a transaction (CREATE INDEX
CONCURRENTLY) through `dedicated()`. Today all three use the primary; read replicas will plug
in behind `reading()`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
from pgvector.psycopg import register_vector_async
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from embedsearch.core.constants import DEFAULT_WRITE_RETRIES
from embedsearch.core.errors import DatabaseUnavailable, WriteConflict

log = logging.getLogger(__name__)

Connection = psycopg.AsyncConnection[Any]
T = TypeVar("T")


# PostgreSQL aborted the transaction for another's sake; run again, it can succeed. (psycopg's
# DeadlockDetected is an OperationalError, not a TransactionRollback.)
_COLLISIONS = (
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
    psycopg.errors.TransactionRollback,
)


@asynccontextmanager
async def database_errors() -> AsyncIterator[None]:
    """Turn connection-level failures into DatabaseUnavailable (HTTP 503), and a transaction
    PostgreSQL aborted for a deadlock or a serialization failure into WriteConflict."""
    try:
        yield
    except _COLLISIONS as exc:
        raise WriteConflict(f"concurrent writes collided: {first_line(exc)}") from None
    except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
        raise DatabaseUnavailable(f"database unavailable: {first_line(exc)}") from None


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
    ) -> None:
        self._conninfo = conninfo
        self._write_retries = write_retries
        self._timeout_s = timeout_s
        self._pool = AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout_s,
            open=False,
            configure=register_vector_async,
            check=AsyncConnectionPool.check_connection,
            kwargs={"connect_timeout": self._connect_timeout},
        )

    @property
    def _connect_timeout(self) -> int:
        return max(1, round(self._timeout_s))

    async def open(self) -> None:
        async with database_errors():
            await self._pool.open(wait=True, timeout=self._timeout_s)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Connection]:
        """A pooled connection for reads (autocommit off: each read is its own transaction)."""
        async with database_errors(), self._pool.connection() as conn:
            yield conn

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[Connection]:
        """A pooled primary connection inside one transaction: all of it commits, or none."""
        async with database_errors(), self._pool.connection() as conn, conn.transaction():
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

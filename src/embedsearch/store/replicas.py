"""Read replicas: which server serves a read (replica_health.py keeps their health).

Reads that may use a replica run inside `replica_reads()` (the API opens it for read requests;
library users open it themselves); everything else, writes above all, stays on the primary.
Healthy replicas take reads in turn; a replica that fails (down, cut off, lagging, or a read
on it failing at connection level) is skipped until a later health round finds it healthy
again; with none healthy, reads go to the primary. A read that fails on a replica before it
got its connection goes on to another server at once; one that fails in the middle raises
ReplicaLost, and `retry_elsewhere` runs the read again.

A read given a WAL position (`min_lsn`, read-your-writes) waits, up to `min_lsn_wait_s`, for
the most advanced healthy replica to have replayed it, checked on the connection that then
serves the read; past that it goes to the primary.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    asynccontextmanager,
    contextmanager,
)
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict

from embedsearch.core.errors import DatabaseUnavailable
from embedsearch.store.lsn import format_lsn
from embedsearch.store.pool import Connection, ServerPool, database_errors, first_line
from embedsearch.store.replica_health import HealthChecks, Monitor, Replica, ReplicaStatus

__all__ = ["PRIMARY", "ReplicaLost", "ReplicaOptions", "ReplicaStatus", "Replicas"]
from embedsearch.store.sql import replicas as sql

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

PRIMARY = "primary"  # the server label of reads the primary served
# A read lost on a replica is run again on the next healthy one, or on the primary.
_READ_ATTEMPTS = 4
# A replica's connections are waited for this long at most: a busy replica is skipped.
_CHECKOUT_TIMEOUT_S = 1.0
_FIRST_POLL_S, _MAX_POLL_S = 0.002, 0.05  # a read waiting for a replica to replay its write


@dataclass(frozen=True)
class ReplicaOptions:
    urls: Sequence[str]
    max_lag_s: float = 5.0
    check_interval_s: float = 1.0
    min_lsn_wait_s: float = 0.5


class ReplicaLost(DatabaseUnavailable):
    """A read on a replica failed at connection level; another server may serve it."""


@dataclass(frozen=True)
class _Scope:
    min_lsn: int | None


_SCOPE: ContextVar[_Scope | None] = ContextVar("embedsearch_replica_reads", default=None)


@contextmanager
def replica_reads(min_lsn: int | None = None) -> Iterator[None]:
    """Reads inside may go to a replica; with `min_lsn`, only to one that has replayed it."""
    token = _SCOPE.set(_Scope(min_lsn))
    try:
        yield
    finally:
        _SCOPE.reset(token)


def read_scope() -> _Scope | None:
    return _SCOPE.get()


def retry_elsewhere(read: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """For a store read: run it again when its replica went away in the middle of it (the
    replica is skipped from then on, so the next run goes to another server)."""

    @functools.wraps(read)
    async def again(*args: P.args, **kwargs: P.kwargs) -> R:
        for _ in range(_READ_ATTEMPTS - 1):
            try:
                return await read(*args, **kwargs)
            except ReplicaLost as exc:
                log.info("%s; reading again elsewhere", exc.message)
        return await read(*args, **kwargs)

    return again


def replica_names(urls: Sequence[str]) -> list[str]:
    """host:port of each URL, for logs and metrics: never the user or the password."""
    names: list[str] = []
    for url in urls:
        params = conninfo_to_dict(url)
        name = f"{params.get('host', 'localhost')}:{params.get('port', '5432')}"
        names.append(name if name not in names else f"{name}#{len(names) + 1}")
    return names


class Replicas:
    def __init__(
        self,
        options: ReplicaOptions,
        *,
        primary_url: str,
        pool: Callable[[str, float], ServerPool],
        timeout_s: float,
    ) -> None:
        self._options = options
        check_timeout = min(timeout_s, max(options.check_interval_s, 0.5))
        self._replicas = [
            Replica(
                name, pool(url, min(timeout_s, _CHECKOUT_TIMEOUT_S)), Monitor(url, check_timeout)
            )
            for name, url in zip(replica_names(options.urls), options.urls, strict=True)
        ]
        self._health = HealthChecks(
            Monitor(primary_url, check_timeout),
            self._replicas,
            max_lag_s=options.max_lag_s,
            interval_s=options.check_interval_s,
        )
        self._turn = 0
        self.primary_reads = 0

    async def open(self) -> None:
        """Open the pools (a replica down now is no reason not to start) and check once, so
        that the first reads can already use the healthy replicas."""
        for replica in self._replicas:
            await replica.pool.open(wait=False)
        await self._health.check()
        self._health.start()

    async def close(self) -> None:
        await self._health.stop()
        for replica in self._replicas:
            await replica.pool.close()

    def statuses(self) -> list[ReplicaStatus]:
        return [
            ReplicaStatus(r.name, r.healthy, r.lag_s, r.lag_bytes, r.reads) for r in self._replicas
        ]

    @asynccontextmanager
    async def reading(
        self,
        min_lsn: int | None,
        primary: Callable[[], AbstractAsyncContextManager[Connection]],
    ) -> AsyncIterator[Connection]:
        """A connection to a healthy replica (one that has replayed `min_lsn`, if given), or
        to the primary."""
        async with AsyncExitStack() as stack:
            replica, conn = await self._replica_connection(stack, min_lsn)
            if replica is None or conn is None:
                self.primary_reads += 1
                yield await stack.enter_async_context(primary())
                return
            try:
                yield conn
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self._lost(replica, exc)
                raise ReplicaLost(
                    f"read replica {replica.name} failed: {first_line(exc)}"
                ) from None

    def _candidates(self, min_lsn: int | None) -> list[Replica]:
        healthy = [r for r in self._replicas if r.healthy]
        if min_lsn is not None:  # the most advanced first: the likeliest to have it
            return sorted(healthy, key=lambda r: r.replayed or 0, reverse=True)
        self._turn = (self._turn + 1) % max(len(healthy), 1)
        return healthy[self._turn :] + healthy[: self._turn]

    async def _replica_connection(
        self, stack: AsyncExitStack, min_lsn: int | None
    ) -> tuple[Replica | None, Connection | None]:
        """The first candidate that gives a connection (and has replayed `min_lsn` by the
        deadline); one that fails here is skipped and the next one tried at once."""
        deadline = time.monotonic() + self._options.min_lsn_wait_s
        for replica in self._candidates(min_lsn):
            # The connection goes back to its pool when this block ends (failed, not caught
            # up, cancelled), unless it is handed on to the caller's stack.
            async with AsyncExitStack() as attempt:
                try:
                    async with database_errors():
                        conn = await attempt.enter_async_context(replica.pool.connection())
                        ready = min_lsn is None or await _replayed(conn, min_lsn, deadline)
                except DatabaseUnavailable as exc:
                    self._lost(replica, exc)
                    continue
                if not ready:
                    return None, None  # waited long enough: the primary has it
                await stack.enter_async_context(attempt.pop_all())
                replica.reads += 1
                return replica, conn
        return None, None

    def _lost(self, replica: Replica, exc: BaseException) -> None:
        replica.pool.failed_at = time.monotonic()  # check its pooled connections before reuse
        reason = exc.message if isinstance(exc, DatabaseUnavailable) else first_line(exc)
        replica.set_health(False, f"a read failed ({reason})")


async def _replayed(conn: Connection, lsn: int, deadline: float) -> bool:
    """Whether this replica has replayed `lsn`, polling until the deadline."""
    delay = _FIRST_POLL_S
    while True:
        row = await (await conn.execute(sql.REPLAYED_AT_LEAST, (format_lsn(lsn),))).fetchone()
        if row and row[0]:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, _MAX_POLL_S)

"""Read replicas' health, checked in the background, never per request.

Each round reads the primary's flushed WAL position first, then every replica's state at once,
each on a connection of its own (not the pools': a busy pool must not make a replica look
down). A replica is healthy while it answers as a standby and its lag is within the bound.
Lag is measured against our own clock, not the servers': a replica's lag is how long ago the
primary stood at a position the replica has replayed since (0 when it has replayed the newest
reading). An idle primary then shows no lag, a replica cut off from the primary shows a growing
one, and no clocks need to agree. It is measured in steps of the check interval.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import psycopg

from embedsearch.store.lsn import parse_lsn
from embedsearch.store.pool import Connection, ServerPool, connect_timeout, first_line
from embedsearch.store.sql import replicas as sql

log = logging.getLogger(__name__)


class LagClock:
    """The primary's flushed WAL position at each check round (monotonic time, LSN)."""

    def __init__(self, keep: int) -> None:
        self._samples: deque[tuple[float, int]] = deque(maxlen=keep)

    def add(self, at: float, lsn: int) -> None:
        self._samples.append((at, lsn))

    @property
    def newest(self) -> int | None:
        return self._samples[-1][1] if self._samples else None

    def lag_s(self, replayed: int, now: float) -> float:
        """How long ago the primary stood where `replayed` is; inf if longer than we keep."""
        for index, (at, lsn) in enumerate(reversed(self._samples)):
            if lsn <= replayed:
                return 0.0 if index == 0 else now - at
        return math.inf


class Monitor:
    """A connection of its own to one server for the health checks, so that a check never
    waits behind busy pooled connections; reconnected on the next round after a failure."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._conn: Connection | None = None
        self.error = ""  # why the last check failed (libpq's words: no credentials in them)

    async def fetchone(self, statement: psycopg.sql.SQL) -> tuple[Any, ...] | None:
        try:
            return await asyncio.wait_for(self._fetchone(statement), self._timeout_s)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            self.error = first_line(exc) if str(exc).strip() else "no answer in time"
            await self.close()
            return None

    async def _fetchone(self, statement: psycopg.sql.SQL) -> tuple[Any, ...] | None:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, connect_timeout=connect_timeout(self._timeout_s)
            )
        return await (await self._conn.execute(statement)).fetchone()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


class Replica:
    def __init__(self, name: str, pool: ServerPool, monitor: Monitor) -> None:
        self.name = name
        self.pool = pool
        self.monitor = monitor
        self.healthy = False
        self.replayed: int | None = None
        self.lag_s: float | None = None
        self.lag_bytes: int | None = None
        self.reads = 0
        self._reason = "not checked yet"

    def set_health(self, healthy: bool, reason: str = "") -> None:
        if healthy and not self.healthy:
            log.info("read replica %s is healthy: serving reads", self.name)
        elif not healthy and (self.healthy or reason != self._reason):
            log.warning("read replica %s skipped: %s", self.name, reason)
        self.healthy, self._reason = healthy, reason


@dataclass(frozen=True)
class ReplicaStatus:
    name: str
    healthy: bool
    lag_s: float | None
    lag_bytes: int | None
    reads: int


class HealthChecks:
    """The rounds: one now (`check`), then one every interval until `stop`."""

    def __init__(
        self, primary: Monitor, replicas: list[Replica], *, max_lag_s: float, interval_s: float
    ) -> None:
        self._primary = primary
        self._replicas = replicas
        self._max_lag_s = max_lag_s
        self._interval_s = interval_s
        self._clock = LagClock(math.ceil(max_lag_s / interval_s) + 2)
        self._checking: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._checking = asyncio.create_task(self._check_every_interval())

    async def stop(self) -> None:
        if self._checking is not None:
            self._checking.cancel()
            await asyncio.gather(self._checking, return_exceptions=True)
        for monitor in [self._primary, *(r.monitor for r in self._replicas)]:
            await monitor.close()

    async def _check_every_interval(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.check()
            except Exception:  # a bug here must not end the checks for good
                log.exception("replica health check failed")

    async def check(self) -> None:
        """One round: the primary's position first, then every replica's, all at once."""
        now = time.monotonic()
        row = await self._primary.fetchone(sql.PRIMARY_FLUSHED)
        if row is not None:
            self._clock.add(now, parse_lsn(row[0]))
        await asyncio.gather(*(self._check(replica) for replica in self._replicas))

    async def _check(self, replica: Replica) -> None:
        row = await replica.monitor.fetchone(sql.REPLICA_STATE)
        if row is None:
            replica.set_health(False, f"unreachable ({replica.monitor.error})")
            return
        in_recovery, replayed = row
        if not in_recovery or replayed is None:
            replica.set_health(False, "not a standby (pg_is_in_recovery() is false)")
            return
        replica.replayed = parse_lsn(replayed)
        replica.lag_s = self._clock.lag_s(replica.replayed, time.monotonic())
        newest = self._clock.newest
        replica.lag_bytes = None if newest is None else max(0, newest - replica.replayed)
        if replica.lag_s > self._max_lag_s:
            replica.set_health(False, f"lagging more than {self._max_lag_s:g} s")
        else:
            replica.set_health(True)

"""Prometheus metrics for one app, and the ASGI middleware that times every request.

Each app has its own CollectorRegistry (tests build many apps in one process). HTTP and model
metrics are recorded as they happen; the pool, queue and catalog readings are taken when
/metrics is scraped (routes/metrics.py), the catalog's from the database without blocking the
event loop.

The middleware is plain ASGI (BaseHTTPMiddleware costs a task and a stream per request): it
gives each request its id (header and log context) and counts it under its route's path
template, which the router leaves in scope["route"]; raw paths would make unbounded label sets.
It costs ~7 us a request (called directly, without HTTP, on the 2-core test machine).
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embedsearch.api.errors import error_response
from embedsearch.api.request_id import HEADER, request_id
from embedsearch.core import sources
from embedsearch.core.deps import Deps
from embedsearch.core.errors import DatabaseUnavailable
from embedsearch.core.sources import SourceStatus
from embedsearch.embedders.registry import EmbedderRegistry
from embedsearch.logs import REQUEST_ID
from embedsearch.store.model_migrations import MigrationRecord
from embedsearch.store.replicas import PRIMARY, ReplicaStatus
from embedsearch.store.stats import CatalogStats, PoolStats, StoreStats

log = logging.getLogger(__name__)

PREFIX = "embedsearch"
# Requests take ~1 ms (health) to seconds (big batches); model calls up to tens of seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MODEL_SECONDS_BUCKETS = (*LATENCY_BUCKETS, 30.0, 60.0)
BATCH_TEXTS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # the route label of a request no route matched
SERVER_TIMING = b"server-timing"
# A request that ended before any response (client gone): nginx's "client closed request".
_NO_RESPONSE = 499


@dataclass
class _Latency:
    buckets: list[int]  # observations per bucket (not cumulative), the last one +Inf
    sum: float = 0.0


class _HttpStats(Collector):
    """Request counts and latency histograms as plain numbers. The middleware adds to them on
    the event loop's thread and /metrics renders them there too, so nothing needs a lock:
    prometheus_client's Counter and Histogram take one per value, ~5 us a request (measured),
    more than all the rest of the middleware."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._les = [repr(float(b)) for b in bounds] + ["+Inf"]  # as prometheus_client writes them
        self._counts: dict[tuple[str, str, int], int] = {}
        self._latency: dict[tuple[str, str], _Latency] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self._counts[key] = self._counts.get(key, 0) + 1
        latency = self._latency.get((method, route))
        if latency is None:
            latency = self._latency[(method, route)] = _Latency([0] * (len(self._bounds) + 1))
        latency.buckets[bisect_left(self._bounds, seconds)] += 1  # the first bound >= seconds
        latency.sum += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            f"{PREFIX}_http_requests",
            "HTTP requests by method, route template and status.",
            labels=["method", "route", "status"],
        )
        for (method, route, status), count in list(self._counts.items()):
            requests.add_metric([method, route, str(status)], count)
        yield requests
        latency = HistogramMetricFamily(
            f"{PREFIX}_http_request_duration_seconds",
            "HTTP request time, until the response's last byte was handed over.",
            labels=["method", "route"],
        )
        for (method, route), observed in list(self._latency.items()):
            cumulative = zip(self._les, accumulate(observed.buckets), strict=True)
            latency.add_metric([method, route], list(cumulative), observed.sum)
        yield latency


@dataclass
class _Readings:
    """What the last scrape read; the collector turns it into gauges."""

    queued: dict[str, int] = field(default_factory=dict)  # model -> texts waiting
    pool: PoolStats | None = None
    database_up: bool | None = None  # None: no database yet (starting)
    catalog: CatalogStats | None = None
    replicas: list[ReplicaStatus] | None = None  # None: no replicas configured
    primary_reads: int = 0  # reads that could have used a replica, served by the primary
    sources: list[SourceStatus] = field(default_factory=list)
    migrations: list[MigrationRecord] = field(default_factory=list)  # with work left


class _ReadingsCollector(Collector):
    def __init__(self) -> None:
        self.readings = _Readings()

    def collect(self) -> Iterator[Metric]:
        readings = self.readings
        queued = GaugeMetricFamily(
            f"{PREFIX}_model_queue_texts", "Texts waiting for the model worker.", labels=["model"]
        )
        for model, texts in readings.queued.items():
            queued.add_metric([model], texts)
        yield queued
        yield from _pool_metrics(readings.pool)
        if readings.database_up is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_database_up",
                "1 if the catalog readings of this scrape succeeded.",
                value=int(readings.database_up),
            )
        yield from _catalog_metrics(readings.catalog)
        if readings.replicas is not None:
            yield from _replica_metrics(readings.replicas, readings.primary_reads)
        yield from _source_metrics(readings.sources)
        yield from _migration_metrics(readings.migrations)


def _pool_metrics(pool: PoolStats | None) -> Iterator[Metric]:
    connections = GaugeMetricFamily(
        f"{PREFIX}_db_pool_connections", "Pooled database connections.", labels=["state"]
    )
    waiting = GaugeMetricFamily(
        f"{PREFIX}_db_pool_waiting", "Requests waiting for a pooled connection."
    )
    if pool is not None:
        connections.add_metric(["in_use"], pool.in_use)
        connections.add_metric(["idle"], pool.idle)
        waiting.add_metric([], pool.waiting)
    yield connections
    yield waiting


def _catalog_metrics(catalog: CatalogStats | None) -> Iterator[Metric]:
    rows = GaugeMetricFamily(
        f"{PREFIX}_collection_rows",
        "Rows per collection, the planner's estimate (pg_class.reltuples).",
        labels=["collection"],
    )
    builds = GaugeMetricFamily(
        f"{PREFIX}_index_builds_in_progress", "CREATE INDEX runs in progress in the database."
    )
    if catalog is not None:
        for name, count in catalog.collection_rows.items():
            rows.add_metric([name], count)
        builds.add_metric([], catalog.index_builds)
    yield rows
    yield builds


def _replica_metrics(replicas: list[ReplicaStatus], primary_reads: int) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        f"{PREFIX}_replicas_healthy",
        "Read replicas serving reads now (answering as standbys, lag within the bound).",
        value=sum(r.healthy for r in replicas),
    )
    up = GaugeMetricFamily(
        f"{PREFIX}_replica_healthy", "1 if this read replica serves reads.", labels=["replica"]
    )
    lag = GaugeMetricFamily(
        f"{PREFIX}_replica_lag_seconds",
        "How long ago the primary stood at the WAL position this replica has replayed.",
        labels=["replica"],
    )
    lag_bytes = GaugeMetricFamily(
        f"{PREFIX}_replica_lag_bytes",
        "WAL the primary had flushed at the last check that this replica has not replayed.",
        labels=["replica"],
    )
    reads = CounterMetricFamily(
        f"{PREFIX}_replica_reads",
        "Reads that may use a replica, by the server that served them (primary: no replica"
        " was healthy, or none had replayed the read's X-Embedsearch-Min-Lsn in time).",
        labels=["server"],
    )
    for replica in replicas:
        up.add_metric([replica.name], int(replica.healthy))
        if replica.lag_s is not None:
            lag.add_metric([replica.name], replica.lag_s)
        if replica.lag_bytes is not None:
            lag_bytes.add_metric([replica.name], replica.lag_bytes)
        reads.add_metric([replica.name], replica.reads)
    reads.add_metric([PRIMARY], primary_reads)
    yield from (up, lag, lag_bytes, reads)


def _source_metrics(found: list[SourceStatus]) -> Iterator[Metric]:
    """What GET /sources/{name} says, per source (counters kept in the service database, so
    they hold across restarts and whichever process runs the worker)."""
    gauges: dict[str, tuple[str, Callable[[SourceStatus], float | None]]] = {
        "pending": ("Changes queued in the source database, not yet stored.", lambda s: s.pending),
        "lag_seconds": ("Age of the oldest pending change.", lambda s: s.lag_seconds),
        "up": ("1 unless the source's state is error.", lambda s: int(s.state != "error")),
        "backfill_rows": ("Rows the backfill has read.", lambda s: s.record.backfill_done),
        "rows_per_second": (
            "Rows stored or removed per second, over the last minute.",
            lambda s: s.record.rows_per_second,
        ),
    }
    for name, (help_text, value) in gauges.items():
        gauge = GaugeMetricFamily(f"{PREFIX}_source_{name}", help_text, labels=["source"])
        for status in found:
            reading = value(status)
            if reading is not None:
                gauge.add_metric([status.record.spec.name], reading)
        yield gauge
    counters: dict[str, tuple[str, Callable[[SourceStatus], float]]] = {
        "rows_synced": ("Rows stored as documents.", lambda s: s.record.rows_synced),
        "rows_deleted": ("Documents removed.", lambda s: s.record.rows_deleted),
        "chunks_embedded": ("Chunks embedded.", lambda s: s.record.chunks_embedded),
    }
    for name, (help_text, count) in counters.items():
        counter = CounterMetricFamily(f"{PREFIX}_source_{name}", help_text, labels=["source"])
        for status in found:
            counter.add_metric([status.record.spec.name], count(status))
        yield counter


def _migration_metrics(found: list[MigrationRecord]) -> Iterator[Metric]:
    """Model migrations with work left, labelled by the name asked for and the new collection."""
    gauges: dict[str, tuple[str, Callable[[MigrationRecord], float]]] = {
        "backfill_chunks": (
            "Chunks of the old collection copied so far.",
            lambda m: m.backfill_done,
        ),
        "backfill_total": (
            "Chunks the old collection held at the start.",
            lambda m: m.backfill_total,
        ),
        "pending": (
            "Writes to the old collection not yet applied to the new.",
            lambda m: m.pending,
        ),
        "ready": (
            "1 once the new collection is complete and compared.",
            lambda m: int(m.state != "backfill"),
        ),
    }
    for name, (help_text, value) in gauges.items():
        gauge = GaugeMetricFamily(
            f"{PREFIX}_migration_{name}", help_text, labels=["collection", "target"]
        )
        for migration in found:
            gauge.add_metric([migration.name, migration.target], value(migration))
        yield gauge


class Metrics:
    """The app's metrics and their registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http = _HttpStats(LATENCY_BUCKETS)
        self.registry.register(self.http)
        self.batch_texts = Histogram(
            f"{PREFIX}_model_batch_texts",
            "Texts per model call.",
            ["model"],
            buckets=BATCH_TEXTS_BUCKETS,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            f"{PREFIX}_model_batch_seconds",
            "Time per model call.",
            ["model"],
            buckets=MODEL_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self._readings = _ReadingsCollector()
        self.registry.register(self._readings)

    def observe_batch(self, model: str, texts: int, seconds: float) -> None:
        """A model call (called by the worker thread; prometheus_client is thread-safe)."""
        self.batch_texts.labels(model).observe(texts)
        self.batch_seconds.labels(model).observe(seconds)

    def watch(self, embedders: EmbedderRegistry) -> None:
        """Record the model calls of these embedders' workers, loaded now or later."""
        embedders.batch_observers.append(self.observe_batch)

    async def read(self, deps: Deps | None) -> None:
        """Take the scrape-time readings (the pool before the catalog query takes one)."""
        if deps is None:
            self._readings.readings = _Readings()
            return
        stats = StoreStats(deps.store.database)
        readings = _Readings(queued=_queued(deps.embedders), pool=stats.pool())
        if deps.store.database.replicated:
            readings.replicas, readings.primary_reads = deps.store.database.replica_statuses()
        try:
            readings.catalog = await stats.catalog()
            readings.database_up = True
            readings.sources = await sources.list_all(deps)
            readings.migrations = await deps.store.migrations.working()
        except DatabaseUnavailable as exc:
            log.warning("metrics: %s", exc.message)
            readings.database_up = False
        self._readings.readings = readings

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _queued(embedders: EmbedderRegistry) -> dict[str, int]:
    found: dict[str, int] = {}
    for worker in embedders.workers():
        name = worker.embedder.name  # two sizes of one model share a name: summed
        found[name] = found.get(name, 0) + worker.queued_texts
    return found


def route_label(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or UNMATCHED


class ObserveRequests:
    """Request id and HTTP metrics, as plain ASGI. Installed outermost, so that responses
    made by other middleware (401s, 413s) carry the id and are counted too."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope["headers"])
        token = REQUEST_ID.set(rid)
        header = (HEADER, rid.encode("ascii"))
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # Server-Timing: the time until the response starts, for the search page (and
                # browsers' dev tools) without changing any response body.
                timing = (SERVER_TIMING, b"app;dur=%.1f" % ((time.perf_counter() - started) * 1e3))
                headers = [*message.get("headers", ()), header, timing]
                message = {**message, "headers": headers}
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if not status:  # answer here, so that this 500 too carries the id
                status = 500
                response = error_response(500, "internal_error", "internal server error")
                await response(scope, receive, send_with_id)
            # Re-raised for ServerErrorMiddleware to log; REQUEST_ID stays set so its line
            # carries the id (the request's task, and with it the context, ends right after).
            raise
        else:
            REQUEST_ID.reset(token)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "other"
            seconds = time.perf_counter() - started
            self.metrics.http.observe(method, route_label(scope), status or _NO_RESPONSE, seconds)

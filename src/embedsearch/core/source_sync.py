"""The sync worker: keeps each source's collection equal to its table.

One `SourceSync` per source and process, and one of them working per source across processes:
it holds the source's advisory lock on the service database (a dedicated connection; a killed
process's lock goes with its connection). It backfills the rows that existed (keyset batches
after a stored cursor) and applies queued changes between those batches and after them. The
capture trigger exists before the backfill starts, so no change made during it is missed;
applying one reads the row's current version, so the order of the two never matters.

Never loses a change: a batch's documents are written (one transaction in the service
database) before its queue entries are deleted, by exact seq, in the source database. A crash
between the two applies the batch again, which is idempotent: the worker reads each row's
current version, and unchanged text is never embedded again (content hashes).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace

import psycopg

from embedsearch.config import Settings
from embedsearch.core import documents
from embedsearch.core.collections import resolve
from embedsearch.core.deps import Deps
from embedsearch.core.documents import DocumentInput
from embedsearch.core.errors import (
    EmbedsearchError,
    InvalidInput,
    PayloadTooLarge,
    reraise_cancellation,
)
from embedsearch.core.sources import capture_of, source_database
from embedsearch.core.validation import check_document_id, check_text
from embedsearch.logs import url_redactor
from embedsearch.store.database import Connection, first_line
from embedsearch.store.source_db import RowDocument, SourceDatabase
from embedsearch.store.sources import BatchResult, SourceRecord, SourceRegistry

log = logging.getLogger(__name__)

_RATE_WINDOW_S = 60.0  # throughput is measured over the last minute


@dataclass(frozen=True)
class SyncOptions:
    batch_rows: int = 256  # rows per backfill batch, changes per live batch
    poll_s: float = 0.5  # how often an empty queue is looked at again
    max_backoff_s: float = 30.0  # between attempts while the source (or service) is down
    discover_s: float = 2.0  # how often the supervisor looks for new or deleted sources
    timeout_s: float = 5.0  # connecting to a source


def sync_options(settings: Settings) -> SyncOptions:
    return SyncOptions(
        batch_rows=settings.source_batch_rows,
        poll_s=settings.source_poll_s,
        timeout_s=settings.db_timeout_s,
    )


class _Rate:
    """Rows and embeddings per second over the last minute."""

    def __init__(self) -> None:
        self._events: deque[tuple[float, int, int]] = deque()

    def add(self, rows: int, embeds: int) -> tuple[float, float]:
        now = time.monotonic()
        self._events.append((now, rows, embeds))
        while self._events and now - self._events[0][0] > _RATE_WINDOW_S:
            self._events.popleft()
        span = max(now - self._events[0][0], 1.0)
        return (
            sum(e[1] for e in self._events) / span,
            sum(e[2] for e in self._events) / span,
        )


class _Backoff:
    def __init__(self, cap_s: float) -> None:
        self._cap = cap_s
        self._delay = 0.5

    def reset(self) -> None:
        self._delay = 0.5

    async def wait(self) -> None:
        await asyncio.sleep(self._delay * random.uniform(0.8, 1.2))
        self._delay = min(self._delay * 2, self._cap)


def _prepared(
    rows: Iterable[RowDocument], deps: Deps
) -> tuple[list[DocumentInput], list[str], list[str]]:
    """Rows as documents to write, ids to delete (gone, filtered out, or no text), and why
    rows were skipped (an id or text the documents API refuses, e.g. over the size limit)."""
    upserts, deletes, skipped = [], [], []
    for row in rows:
        if row.text is None or not row.text.strip():
            deletes.append(row.row_id)
            continue
        try:
            check_document_id(row.row_id, field="id")
            check_text(row.text, max_chars=deps.limits.max_document_chars, field="text")
            deps.limits.check_metadata(row.metadata, "metadata")
        except (InvalidInput, PayloadTooLarge) as exc:
            skipped.append(f"row {row.row_id[:80]!r} skipped: {exc.message}")
            continue
        upserts.append(DocumentInput(row.row_id, row.text, row.metadata))
    return upserts, deletes, skipped


class SourceSync:
    """Keeps one source in sync until it is deleted (or the task is cancelled)."""

    def __init__(self, deps: Deps, name: str, options: SyncOptions) -> None:
        self._deps = deps
        self._name = name
        self._options = options
        self._registry: SourceRegistry = deps.store.sources
        self._rate = _Rate()
        self._backoff = _Backoff(options.max_backoff_s)
        self._redact: Callable[[str], str] = url_redactor(deps.store.database.conninfo)

    async def run(self) -> None:
        while True:
            try:
                async with self._deps.store.database.dedicated() as lock:
                    if await SourceRegistry.try_lock(lock, self._name):
                        log.info("source %s: syncing", self._name)
                        if not await self._sync(lock):
                            return  # deleted
                        continue
                await asyncio.sleep(self._options.discover_s)  # another process has it
            except EmbedsearchError as exc:
                reraise_cancellation()
                await self._failed(exc.message)
            except (psycopg.Error, OSError) as exc:  # e.g. the queue dropped by hand
                reraise_cancellation()
                await self._failed(f"unexpected error: {self._redact(first_line(exc))}")

    async def _failed(self, message: str) -> None:
        log.warning("source %s: %s; retrying", self._name, message)
        with suppress(EmbedsearchError):  # the service database is down too: retried anyway
            await self._registry.record_error(self._name, message)
        await self._backoff.wait()

    async def _sync(self, lock: Connection) -> bool:
        """Work while the lock is held; False once the source is deleted."""
        record = await self._registry.get(self._name)
        if record is None:
            return False
        source = source_database(self._deps, record.spec, timeout_s=self._options.timeout_s)
        self._redact = source.redact  # unexpected errors may come from the source from now on
        async with source.connect() as conn:
            await self._registry.record_error(self._name, None)
            self._backoff.reset()
            while True:
                await SourceRegistry.check_alive(lock)  # the lock lives with this connection
                record = await self._registry.get(self._name)
                if record is None:
                    return False
                if record.phase == "backfill":
                    # Changes are applied between backfill batches too: each reads the row's
                    # current version, so a row the backfill reaches later is simply found
                    # unchanged then.
                    await self._backfill(source, conn, record)
                    await self._apply_changes(source, conn, record)
                elif not await self._apply_changes(source, conn, record):
                    await asyncio.sleep(self._options.poll_s)

    async def _backfill(
        self, source: SourceDatabase, conn: Connection, record: SourceRecord
    ) -> None:
        capture = capture_of(record.spec)
        rows = await source.backfill_batch(
            conn, capture, record.backfill_cursor, self._options.batch_rows
        )
        if not rows:
            await self._registry.finish_backfill(self._name)
            log.info("source %s: backfill done (%d rows); live", self._name, record.backfill_done)
            return
        result = await self._store(record, rows)
        await self._record(replace(result, backfilled=len(rows), cursor=rows[-1].row_id))

    async def _apply_changes(
        self, source: SourceDatabase, conn: Connection, record: SourceRecord
    ) -> bool:
        capture = capture_of(record.spec)
        changes, rows = await source.changes(conn, capture, self._options.batch_rows)
        if not changes:
            return False
        result = await self._store(record, rows)
        # Only now, with the documents committed: the queue entries go.
        await source.acknowledge(conn, capture, [c.seq for c in changes])
        await self._record(result)
        return True

    async def _record(self, result: BatchResult) -> None:
        """After the batch's documents committed (a crash before this redoes the batch)."""
        rows_rate, embeds_rate = self._rate.add(result.synced + result.deleted, result.embedded)
        await self._registry.record_batch(self._name, result, rows_rate, embeds_rate)

    async def _store(self, record: SourceRecord, rows: Sequence[RowDocument]) -> BatchResult:
        """Write the rows' documents (one transaction) and remove the gone ones."""
        upserts, deletes, skipped = _prepared(rows, self._deps)
        collection = record.spec.collection
        embedded, refused = await self._write(upserts, collection)
        skipped += refused
        target = await resolve(self._deps, collection)
        deleted = 0
        for document_id in deletes:
            deleted += await target.chunks.documents.delete(document_id)
        for reason in skipped:
            log.warning("source %s: %s", self._name, reason)
        return BatchResult(
            synced=len(upserts) - len(refused),
            deleted=deleted,
            skipped=len(skipped),
            embedded=embedded,
            skip_error=skipped[-1] if skipped else None,
        )

    async def _write(self, upserts: list[DocumentInput], collection: str) -> tuple[int, list[str]]:
        """Chunks embedded, and why documents were refused. If the batch is refused for one
        document, the others are written one by one and that one is skipped, so one bad row
        cannot stop the source."""
        if not upserts:
            return 0, []
        try:
            return (await documents.put(self._deps, upserts, collection=collection)).embedded, []
        except InvalidInput:
            if len(upserts) == 1:
                raise
        embedded, refused = 0, []
        for document in upserts:
            try:
                outcome = await documents.put(self._deps, [document], collection=collection)
                embedded += outcome.embedded
            except (InvalidInput, PayloadTooLarge) as exc:
                refused.append(f"row {document.document_id[:80]!r} skipped: {exc.message}")
        return embedded, refused


class SourceSupervisor:
    """Runs a SourceSync for every registered source (or the named ones), starting new ones and
    letting deleted ones end."""

    def __init__(self, deps: Deps, options: SyncOptions, only: Sequence[str] = ()) -> None:
        self._deps = deps
        self._options = options
        self._only = set(only)
        self._syncs: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="embedsearch-sources")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._syncs.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._syncs.clear()

    async def run(self) -> None:
        while True:
            try:
                names = set(await self._deps.store.sources.names())
            except EmbedsearchError as exc:
                reraise_cancellation()
                log.warning("sources: cannot list them: %s", exc.message)
                names = set(self._syncs)
            if self._only:
                names &= self._only
            for name in names - set(self._syncs):
                self._syncs[name] = asyncio.create_task(
                    SourceSync(self._deps, name, self._options).run(), name=f"source-{name}"
                )
            for name, task in list(self._syncs.items()):
                if task.done():
                    del self._syncs[name]
                    if not task.cancelled() and task.exception() is not None:
                        log.error("source %s: worker failed", name, exc_info=task.exception())
            await asyncio.sleep(self._options.discover_s)

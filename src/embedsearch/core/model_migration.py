"""Model migration: a collection's chunks embedded again by another model into a shadow
collection while the old one keeps serving, then one switch that sends the collection's name
(and its aliases) to the new one.

From the start (one transaction) a trigger queues every chunk written to or deleted from the
old collection, by any process or path. The worker backfills the shadow from the stored texts
(keyset batches after a stored cursor: resumable), applies the queued changes between batches
and after, compares the two rankings, and switches when asked: under a lock that holds the old
collection's writes for the moment it takes (searches go on), it applies what is still queued,
copies the documents registry, moves the aliases, and (when the migration was asked for by the
collection's own name) renames the old collection `<name>_vN` and makes the name an alias of
the new one. The old collection is kept until dropped.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import psycopg

from embedsearch.config import Settings
from embedsearch.core import collections, indexing
from embedsearch.core.chunks import content_hash
from embedsearch.core.constants import DEFAULT_COLLECTION
from embedsearch.core.deps import Deps
from embedsearch.core.errors import (
    Conflict,
    EmbedsearchError,
    InvalidInput,
    NotFound,
    reraise_cancellation,
)
from embedsearch.core.migration_compare import compare, parse_judgments
from embedsearch.core.validation import check_collection_name, check_embedder_spec
from embedsearch.store.database import Connection, first_line
from embedsearch.store.model_migrations import (
    MigrationRecord,
    ModelMigrations,
    ShadowWrite,
    StoredChunk,
)
from embedsearch.store.records import ChunkRows, CollectionRecord

log = logging.getLogger(__name__)

_MAX_NAME = 40  # core.constants.COLLECTION_NAME_PATTERN
_VERSION_SUFFIX = re.compile(r"_v\d+$")
_MAX_SAMPLE_QUERIES = 200


@dataclass(frozen=True)
class MigrationOptions:
    batch_rows: int = 128  # chunks per backfill batch and per batch of changes
    poll_s: float = 0.5  # how often an empty queue is looked at again
    discover_s: float = 2.0  # how often the supervisor looks for new migrations
    # The switch locks writes out while it applies what is left: first drain to below this.
    switch_below: int = 16
    # After the switch, writes that still reach the old collection (requests that looked its
    # name up just before) are applied to the new one for this long.
    forward_s: float = 15.0
    max_backoff_s: float = 30.0


def migration_options(settings: Settings) -> MigrationOptions:
    return MigrationOptions(
        batch_rows=settings.migration_batch_rows, forward_s=settings.migration_forward_s
    )


async def start(
    deps: Deps,
    name: str,
    *,
    embedder: str,
    dimensions: int | None = None,
    switch: bool = False,
    queries: Sequence[str] | None = None,
    judgments: dict[str, Any] | None = None,
) -> tuple[MigrationRecord, bool]:
    """Begin migrating the collection `name` (or the one the alias `name` names) to another
    model; returns the migration and whether it is new. Asking again for the same model
    returns the running migration (with `switch`, it switches once ready)."""
    check_collection_name(name)
    spec = check_embedder_spec(embedder, field="embedder")
    if dimensions is not None and not 1 <= dimensions <= 16_000:
        raise InvalidInput("dimensions must be between 1 and 16000", field="dimensions")
    probe = _probe(queries, judgments)
    source = (await collections.resolve(deps, name)).record
    if source.name == DEFAULT_COLLECTION:
        raise InvalidInput(
            "the default collection's model is the server's configured embedder "
            "(EMBEDSEARCH_EMBEDDER); migrate a named collection, reached through an alias",
            field="collection",
        )
    if source.layout.distributed:
        raise InvalidInput(
            "model migration of a sharded (Citus) collection is not supported yet",
            field="collection",
        )
    running = await deps.store.migrations.latest(source.name)
    if running is not None and running.active and running.target == source.name:
        raise Conflict(
            f"collection {source.name!r} is the new collection of a running migration (from "
            f"{running.source!r}); migrate after its switch",
            field="collection",
        )
    if running is not None and running.active and running.source == source.name:
        if (running.embedder, running.dimensions) != (spec, dimensions):
            raise Conflict(
                f"collection {source.name!r} is being migrated to {running.embedder} already;"
                f" cancel it first (DELETE /collections/{name}/migration)",
                field="embedder",
            )
        if switch and not running.switch_asked:
            await deps.store.migrations.ask_switch(running.id)
        return await _reread(deps, running.id), False
    info = await deps.embedders.describe(spec, dimensions)
    if (info.name, info.dimensions) == (source.model, source.dimensions):
        raise InvalidInput(
            f"collection {source.name!r} already holds {info.name} ({info.dimensions} dims) "
            "vectors: migrating needs another model or size",
            field="embedder",
        )
    target = await _free_name(deps, name, first=2)
    record = await deps.store.migrations.start(
        name=name,
        source=source,
        target=target,
        model=info.name,
        dimensions=info.dimensions,
        embedder=spec,
        asked_dimensions=dimensions,
        switch=switch,
        probe=probe,
    )
    log.info("migration %d: %s -> %s (%s)", record.id, source.name, target, spec)
    return record, True


async def status(deps: Deps, name: str) -> MigrationRecord:
    """The newest migration asked for by `name` or from/to the collection it names."""
    check_collection_name(name)
    record = await deps.store.migrations.latest(name)
    if record is None:
        with suppress(NotFound):
            resolved = (await collections.resolve(deps, name)).record.name
            record = await deps.store.migrations.latest(resolved)
    if record is None:
        raise NotFound(f"no model migration of {name!r}", field="collection")
    return record


async def ask_switch(deps: Deps, name: str) -> MigrationRecord:
    """Switch once the shadow is complete (at once if it is)."""
    record = await _active(deps, name)
    await deps.store.migrations.ask_switch(record.id)
    return await _reread(deps, record.id)


async def cancel(deps: Deps, name: str) -> MigrationRecord:
    """Stop an active migration: the capture ends and the shadow collection is dropped."""
    record = await _active(deps, name)
    source = await deps.store.registry.get(record.source)
    if source is None:
        raise NotFound(f"collection {record.source!r} does not exist", field="collection")
    await deps.store.migrations.cancel(record, source)
    return await _reread(deps, record.id)


async def _active(deps: Deps, name: str) -> MigrationRecord:
    record = await status(deps, name)
    if not record.active:
        raise Conflict(
            f"the newest migration of {name!r} is {record.state}, not running", field="collection"
        )
    return record


async def _reread(deps: Deps, migration_id: int) -> MigrationRecord:
    record = await deps.store.migrations.get(migration_id)
    assert record is not None  # migrations are never deleted
    return record


def _probe(queries: Sequence[str] | None, judgments: dict[str, Any] | None) -> dict[str, Any]:
    probe: dict[str, Any] = {}
    if queries:
        if len(queries) > _MAX_SAMPLE_QUERIES or not all(
            isinstance(q, str) and q.strip() for q in queries
        ):
            raise InvalidInput(
                f"queries must be 1 to {_MAX_SAMPLE_QUERIES} non-empty strings", field="queries"
            )
        probe["sample"] = list(queries)
    if judgments is not None:
        probe["judgments"] = parse_judgments(judgments)
    return probe


async def _free_name(deps: Deps, name: str, *, first: int) -> str:
    """`<stem>_v<k>` for the first k from `first` that no collection, alias or running
    migration has taken (the stem is `name` without a `_v<k>` it already ends in)."""
    stem = _VERSION_SUFFIX.sub("", name)
    for k in range(first, 10_000):
        suffix = f"_v{k}"
        candidate = stem[: _MAX_NAME - len(suffix)] + suffix
        if not await deps.store.migrations.name_taken(candidate):
            return candidate
    raise Conflict(f"no free name for a new version of {name!r}", field="collection")


class MigrationRunner:
    """Carries one migration to its end. One runner works per migration across processes
    (an advisory lock on a dedicated connection; a killed process's lock goes with it)."""

    def __init__(
        self,
        deps: Deps,
        migration_id: int,
        options: MigrationOptions,
        *,
        until_ready: bool = False,
    ) -> None:
        self._deps = deps
        self._id = migration_id
        self._options = options
        self._store = deps.store.migrations
        # The CLI's foreground run: return once complete and compared, unless a switch is
        # asked for (the server's worker keeps applying writes until the switch).
        self._until_ready = until_ready

    def _finished(self, record: MigrationRecord) -> bool:
        if not record.working:
            return True
        return self._until_ready and record.state == "ready" and not record.switch_asked

    async def run(self) -> MigrationRecord:
        """Work until the migration is switched, cancelled or failed; returns its record."""
        delay = 0.5
        while True:
            try:
                async with self._deps.store.database.dedicated() as lock:
                    if await ModelMigrations.try_lock(lock, self._id):
                        record = await self._work(lock)
                        if record is not None:
                            return record
                        continue
                await asyncio.sleep(self._options.discover_s)  # another process has it
                record = await _reread(self._deps, self._id)
                if self._finished(record):
                    return record
            except EmbedsearchError as exc:
                reraise_cancellation()
                await self._failed(exc.message, delay)
                delay = min(delay * 2, self._options.max_backoff_s)
            except (psycopg.Error, OSError) as exc:
                reraise_cancellation()
                await self._failed(f"unexpected error: {first_line(exc)}", delay)
                delay = min(delay * 2, self._options.max_backoff_s)

    async def _failed(self, message: str, delay: float) -> None:
        log.warning("migration %d: %s; retrying", self._id, message)
        with suppress(EmbedsearchError):
            await self._store.record_error(self._id, message)
        await asyncio.sleep(delay)

    async def _work(self, lock: Connection) -> MigrationRecord | None:
        """While the lock is held: the record once the migration ended."""
        while True:
            await ModelMigrations.check_alive(lock)  # the lock lives with this connection
            record = await _reread(self._deps, self._id)
            if self._finished(record):
                return record
            if record.state == "backfill":
                if await self._backfill(record):
                    await self._apply_changes(record)
                    continue
                await indexing.finish_deferred(self._deps, record.target)
                while await self._apply_changes(record):
                    pass
                comparison = await compare(self._deps, record)
                await self._store.mark_ready(self._id, comparison)
                log.info("migration %d: backfill done; %s", self._id, comparison)
            elif record.state == "switched":
                await self._forward(record)
            elif record.switch_asked:
                await self._switch(record)
            elif not await self._apply_changes(record):
                await asyncio.sleep(self._options.poll_s)

    async def _backfill(self, record: MigrationRecord) -> bool:
        """One batch of the old collection's chunks after the cursor; False when none is left."""
        source = await self._collection(record.source)
        chunks = await self._store.backfill_batch(
            source.table, record.backfill_cursor, self._options.batch_rows
        )
        if not chunks:
            return False
        shadow = await collections.resolve(self._deps, record.target)
        if record.backfill_done == 0:  # its HNSW index is built once, at the end
            await indexing.defer(self._deps, shadow)
        # Embedded outside the write's transaction: a slow provider holds no lock or
        # connection meanwhile (only this worker writes to the shadow).
        async with self._deps.store.database.reading(primary=True) as conn:
            batch = await self._batch(conn, shadow, chunks, cursor=chunks[-1].chunk_id)
        await self._write(shadow, batch)
        return True

    async def _write(self, shadow: collections.Collection, batch: ShadowWrite) -> None:
        async def write(conn: Connection) -> None:
            await self._store.write(conn, self._id, shadow.chunks, batch)

        await self._deps.store.database.transaction(write)

    async def _apply_changes(self, record: MigrationRecord) -> bool:
        """One batch of queued changes; False when the queue was empty. Entries are
        acknowledged by exact seq with the batch's write: one queued meanwhile stays."""
        shadow = await collections.resolve(self._deps, record.target)
        async with self._deps.store.database.reading(primary=True) as conn:
            batch = await self._changes(conn, record, shadow)
        if batch is None:
            return False
        await self._write(shadow, batch)
        return True

    async def _apply_on(self, conn: Connection, record: MigrationRecord) -> bool:
        """Apply one batch of queued changes inside `conn`'s transaction (the switch's)."""
        shadow = await collections.resolve(self._deps, record.target)
        batch = await self._changes(conn, record, shadow)
        if batch is not None:
            await self._store.write(conn, self._id, shadow.chunks, batch)
        return batch is not None

    async def _changes(
        self, conn: Connection, record: MigrationRecord, shadow: collections.Collection
    ) -> ShadowWrite | None:
        """The next batch of queued changes, embedded; None when the queue is empty. Each
        entry reads the chunk's current row: order and repeats do not matter."""
        entries = await self._store.pending(conn, self._id, self._options.batch_rows)
        if not entries:
            return None
        source = await self._collection(record.source_now)
        ids = [chunk_id for chunk_id, _ in entries]
        present = [c for c in await self._store.read_chunks(conn, source.table, ids) if c.content]
        kept = {c.chunk_id for c in present}
        batch = await self._batch(conn, shadow, present)
        seqs = [seq for _, covered in entries for seq in covered]
        deleted = [chunk_id for chunk_id in ids if chunk_id not in kept]
        return ShadowWrite(batch.rows, batch.relabeled, deleted, seqs)

    async def _batch(
        self,
        conn: Connection,
        shadow: collections.Collection,
        chunks: Sequence[StoredChunk],
        cursor: str | None = None,
    ) -> ShadowWrite:
        """Embed what the shadow does not hold yet; only relabel the rest."""
        chunks = [c for c in chunks if c.content]
        have = await self._store.hashes(conn, shadow.record.table, [c.chunk_id for c in chunks])
        fresh: list[tuple[StoredChunk, str]] = []
        relabeled: list[StoredChunk] = []
        for chunk in chunks:
            digest = _hash(chunk)
            if have.get(chunk.chunk_id) == digest:
                relabeled.append(chunk)
            else:
                fresh.append((chunk, digest))
        rows = None
        if fresh:
            texts = [str(c.content) for c, _ in fresh]
            vectors = (await shadow.embed(texts)).vectors
            rows = ChunkRows(
                [c.chunk_id for c, _ in fresh],
                vectors,
                shadow.record.model,
                texts,
                [digest for _, digest in fresh],
                [c.metadata for c, _ in fresh],
                [c.document_id for c, _ in fresh],
            )
        return ShadowWrite(rows, relabeled, cursor=cursor)

    async def _switch(self, record: MigrationRecord) -> None:
        while await self._pending(record) >= self._options.switch_below:
            await self._apply_changes(record)
        source = await self._collection(record.source)
        archive = None
        if record.name == record.source:  # the name becomes an alias of the new collection
            archive = await _free_name(self._deps, record.source, first=1)

        async def drain(conn: Connection) -> None:
            while await self._apply_on(conn, record):
                pass

        await self._store.switch(record, source, archive, drain)
        collections.forget_cached(self._deps, record.source)
        log.info(
            "migration %d: switched %s to %s%s",
            self._id,
            record.name,
            record.target,
            f" (the old collection is now {archive})" if archive else "",
        )

    async def _forward(self, record: MigrationRecord) -> None:
        """After the switch: late writes to the old collection, until the grace is over."""
        source = await self._deps.store.registry.get(record.source_now)
        if source is not None and await self._apply_changes(record):
            return
        since = await self._store.seconds_since_switch(self._id)
        if source is None or (since is not None and since >= self._options.forward_s):
            await self._store.stop_capturing(record, source.table if source else None)
            log.info("migration %d: done (late writes no longer forwarded)", self._id)
        else:
            await asyncio.sleep(self._options.poll_s)

    async def _pending(self, record: MigrationRecord) -> int:
        return (await _reread(self._deps, record.id)).pending

    async def _collection(self, name: str) -> CollectionRecord:
        record = await self._deps.store.registry.get(name)
        if record is None:
            raise NotFound(f"collection {name!r} does not exist", field="collection")
        return record


def _hash(chunk: StoredChunk) -> str:
    # A chunk written without a hash (the brief's script) is hashed here, as writes do.
    return chunk.content_hash or content_hash(str(chunk.content))


class MigrationSupervisor:
    """Runs a MigrationRunner for every active migration (inside `embedsearch serve`)."""

    def __init__(self, deps: Deps, options: MigrationOptions) -> None:
        self._deps = deps
        self._options = options
        self._runners: dict[int, asyncio.Task[MigrationRecord]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="embedsearch-migrations")

    async def stop(self) -> None:
        tasks: list[asyncio.Task[Any]] = [t for t in (self._task,) if t is not None]
        tasks += self._runners.values()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._runners.clear()

    async def run(self) -> None:
        while True:
            try:
                ids = {m.id for m in await self._deps.store.migrations.working()}
            except EmbedsearchError as exc:
                reraise_cancellation()
                log.warning("migrations: cannot list them: %s", exc.message)
                ids = set()
            for migration_id in ids - set(self._runners):
                runner = MigrationRunner(self._deps, migration_id, self._options)
                self._runners[migration_id] = asyncio.create_task(
                    runner.run(), name=f"migration-{migration_id}"
                )
            for migration_id, task in list(self._runners.items()):
                if task.done():
                    del self._runners[migration_id]
                    if not task.cancelled() and task.exception() is not None:
                        log.error("migration %d: runner failed", migration_id, exc_info=True)
            await asyncio.sleep(self._options.discover_s)


def describe(record: MigrationRecord) -> dict[str, Any]:
    """The migration as the API and the CLI show it."""
    return {
        "id": record.id,
        "name": record.name,
        "source": record.source,
        "target": record.target,
        "embedder": record.embedder,
        "dimensions": record.dimensions,
        "state": record.state,
        "switchAsked": record.switch_asked,
        "backfill": {"done": record.backfill_done, "total": record.backfill_total},
        "pending": record.pending,
        "applied": record.applied,
        "embedded": record.embedded,
        "comparison": record.comparison,
        "archivedAs": record.archived_as,
        "lastError": record.last_error,
        "createdAt": record.created_at,
        "switchedAt": record.switched_at,
    }

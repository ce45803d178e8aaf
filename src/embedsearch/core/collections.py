"""Collections: create, list, look up, drop; and `resolve`, which turns a name into a
`Collection` bound to its registry record, its store handle and (on first use) its model."""

from __future__ import annotations

import time
from dataclasses import dataclass

from embedsearch.core.constants import DEFAULT_COLLECTION, MAX_SHARDS
from embedsearch.core.deps import CachedRecord, Deps
from embedsearch.core.errors import Conflict, InvalidInput, ModelMismatch, NotFound
from embedsearch.core.fusion import Fusion
from embedsearch.core.validation import (
    check_collection_name,
    check_embedder_spec,
    check_text_config,
)
from embedsearch.core.vector_index import IndexType, Storage
from embedsearch.embedders.base import EmbeddingBatch, normalize_rows
from embedsearch.embedders.registry import EmbedderRegistry
from embedsearch.embedders.worker import EmbeddingWorker
from embedsearch.store import CollectionHandle
from embedsearch.store.records import CollectionOptions, CollectionRecord

# The default collection cannot be dropped and its model is fixed, so the brief's path reuses
# its record this long (its index settings may change in another process).
_DEFAULT_RECORD_TTL_S = 5.0


@dataclass(frozen=True)
class Collection:
    """One collection, resolved once: its record, its chunks (handle) and its model."""

    record: CollectionRecord
    chunks: CollectionHandle
    _embedders: EmbedderRegistry

    async def worker(self) -> EmbeddingWorker:
        """The model worker that embeds for this collection (loaded on first use), refused if
        it no longer makes the vectors the collection holds."""
        record = self.record
        if record.name == DEFAULT_COLLECTION or record.embedder is None:
            worker = await self._embedders.default()
        else:
            worker = await self._embedders.get(record.embedder, record.dimensions)
        made = (worker.embedder.name, worker.embedder.dimensions)
        if made != (record.model, record.dimensions):
            raise ModelMismatch(
                f"collection {record.name!r} holds {record.model} ({record.dimensions} dims) "
                f"vectors but its embedder now gives {made[0]} ({made[1]})"
            )
        return worker

    async def embed(self, texts: list[str]) -> EmbeddingBatch:
        """Embed for this collection: unit length unless it keeps the model's raw vectors."""
        batch = await (await self.worker()).embed_async(texts)
        if not self.record.normalized:
            return batch
        return EmbeddingBatch(normalize_rows(batch.vectors), batch.token_counts, batch.truncated)


async def resolve(deps: Deps, name: str | None) -> Collection:
    """Look a collection up by its name or an alias (404 if neither). None means the brief's
    default collection."""
    name = check_collection_name(name or DEFAULT_COLLECTION)
    record = _cached_default(deps) if name == DEFAULT_COLLECTION else None
    if record is None:
        record = await deps.store.registry.find(name)
        if record is None:
            raise NotFound(f"collection {name!r} does not exist", field="collection")
        if name == DEFAULT_COLLECTION:
            deps.default_record = CachedRecord(record, time.monotonic())
    return Collection(record, deps.store.collection(record), deps.embedders)


def _cached_default(deps: Deps) -> CollectionRecord | None:
    cached = deps.default_record
    if cached is None or time.monotonic() - cached.at >= _DEFAULT_RECORD_TTL_S:
        return None
    return cached.record


def forget_cached(deps: Deps, name: str) -> None:
    """After a change to a collection's record (an index build)."""
    if name == DEFAULT_COLLECTION:
        deps.default_record = None


async def create(
    deps: Deps,
    name: str,
    *,
    embedder: str | None = None,
    dimensions: int | None = None,
    options: CollectionOptions | None = None,
) -> CollectionRecord:
    """Create a collection (409 if it exists). The model is described, not loaded."""
    check_collection_name(name, field="name")
    spec = check_embedder_spec(embedder or deps.embedders.default_spec)
    options = options or CollectionOptions()
    options.index.check()
    if options.index.type is IndexType.IVFFLAT:
        raise InvalidInput(
            "IVFFlat learns its lists from stored vectors: create the collection with hnsw "
            "or none, load it, then build IVFFlat (POST /collections/{name}/index)",
            field="index.type",
        )
    check_text_config(options.text_config)
    if options.shards is not None:
        await _check_sharding(deps, options.shards)
    if await deps.store.registry.get(name) is not None:
        raise Conflict(f"collection {name!r} already exists", field="name")
    if not await deps.store.registry.text_config_exists(options.text_config):
        raise InvalidInput(
            f"text search configuration {options.text_config!r} does not exist in the database"
            " (pg_ts_config lists those it has)",
            field="textConfig",
        )
    info = await deps.embedders.describe(spec, dimensions)
    return await deps.store.registry.create(
        name, model=info.name, dimensions=info.dimensions, embedder=spec, options=options
    )


async def _check_sharding(deps: Deps, shards: int) -> None:
    """A sharded collection needs a Citus coordinator with workers behind it."""
    if not 1 <= shards <= MAX_SHARDS:
        raise InvalidInput(
            f"sharding.shards must be between 1 and {MAX_SHARDS}", field="sharding.shards"
        )
    citus = await deps.store.registry.citus()
    if citus is None:
        raise InvalidInput(
            "sharding needs Citus: this database has no citus extension (point "
            "EMBEDSEARCH_DATABASE_URL at a Citus coordinator, or leave sharding out)",
            field="sharding",
        )
    if citus.server_version < 180000:  # sharded writes return old and new rows (RETURNING OLD)
        raise InvalidInput(
            "sharding needs PostgreSQL 18 or newer on the Citus coordinator and workers",
            field="sharding",
        )
    if citus.workers == 0:
        raise InvalidInput(
            "sharding needs Citus workers: this coordinator has no active worker nodes "
            "(add them with citus_add_node)",
            field="sharding",
        )


async def list_all(deps: Deps) -> list[tuple[CollectionRecord, int]]:
    """Every collection with its chunk count."""
    store = deps.store
    return [(r, await store.collection(r).count()) for r in await store.registry.list()]


async def get(deps: Deps, name: str) -> tuple[CollectionRecord, int]:
    collection = await resolve(deps, name)
    return collection.record, await collection.chunks.count()


async def compact(deps: Deps, name: str) -> tuple[int, int]:
    """Rewrite a collection's table: vectors a previous release left in TOAST move into the
    rows (searches read them several times faster), dead rows go. Returns the table's bytes
    before and after. The collection is locked while it runs."""
    collection = await resolve(deps, name)
    before = await deps.store.indexes.table_size(collection.record)
    await deps.store.indexes.rewrite(collection.record)
    return before, await deps.store.indexes.table_size(collection.record)


async def drop(deps: Deps, name: str) -> None:
    check_collection_name(name, field="name")
    if name == DEFAULT_COLLECTION:
        raise InvalidInput("the default collection cannot be dropped", field="name")
    if not await deps.store.registry.drop(name):
        raise NotFound(f"collection {name!r} does not exist", field="name")


async def ensure(
    deps: Deps,
    name: str | None,
    *,
    embedder: str | None = None,
    dimensions: int | None = None,
    storage: Storage | None = None,
) -> CollectionRecord | None:
    """Create the collection if it does not exist (returns its record), else None. Options
    given for an existing collection must agree with it: they cannot change its vectors."""
    try:
        existing = (await resolve(deps, name)).record
    except NotFound:
        assert name is not None  # the default collection always exists
        options = CollectionOptions(storage=storage or Storage.VECTOR)
        try:
            return await create(
                deps, name, embedder=embedder, dimensions=dimensions, options=options
            )
        except Conflict:  # created meanwhile by another process: just as good
            existing = (await resolve(deps, name)).record
    asked = {"embedder": embedder, "dimensions": dimensions, "storage": storage}
    has = {
        "embedder": existing.embedder,
        "dimensions": existing.dimensions,
        "storage": existing.storage,
    }
    for option, value in asked.items():
        if value is not None and value != has[option]:
            raise InvalidInput(
                f"collection {existing.name!r} exists with {option} {has[option]}, not {value};"
                f" {option} applies only to a new collection",
                field=option,
            )
    return None


async def set_fusion(deps: Deps, name: str, fusion: Fusion | None) -> CollectionRecord:
    """Store the fusion hybrid search uses when a request gives none (None clears it: the
    built-in default again). 404 for a missing collection; returns the updated record."""
    if fusion is not None:
        fusion.check()
    record = (await resolve(deps, name)).record
    await deps.store.registry.set_fusion(record.name, fusion.as_dict() if fusion else None)
    forget_cached(deps, record.name)
    updated = await deps.store.registry.get(record.name)
    if updated is None:  # dropped meanwhile by another process
        raise NotFound(f"collection {record.name!r} does not exist", field="collection")
    return updated

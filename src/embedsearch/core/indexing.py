"""ANN index management and health for a collection: build or rebuild it, and report what it
costs in recall, measured live against exact search, with plain advice."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np

from embedsearch.core.collections import Collection, forget_cached, resolve
from embedsearch.core.deps import Deps
from embedsearch.core.errors import Conflict, InvalidInput
from embedsearch.core.vector_index import IndexSpec, IndexType, Storage, lists_for, probes_for
from embedsearch.store.records import IndexBuildProgress, VectorIndexState

# Without an index every search scans the whole table; past this many rows that gets slow.
UNINDEXED_ROWS_ADVICE = 20_000
RECALL_ADVICE = 0.95
MAX_SAMPLE = 1000


@dataclass(frozen=True)
class IndexReport:
    collection: str
    type: IndexType
    options: dict[str, int]
    opclass: str | None
    storage: Storage
    dimensions: int
    rows: int
    index_rows: int | None  # rows present at the last build through embedsearch
    index_bytes: int
    table_bytes: int
    valid: bool
    ef_search: int | None  # HNSW default candidate list
    probes: int | None  # IVFFlat default lists per query
    built_at: datetime | None
    recall_at_k: float | None  # mean ANN top-k overlap with exact top-k over sampled vectors
    k: int
    sample: int
    advice: list[str]
    build: IndexBuildProgress | None  # a build running right now
    deferred: bool = False  # an unfinished bulk load dropped the index to build it at its end


async def build(deps: Deps, collection: str, spec: IndexSpec) -> IndexReport:
    """Build (or rebuild, or with type none drop) the collection's ANN index."""
    target = await resolve(deps, collection)
    record = target.record
    spec = spec.check()
    if (
        spec.type is not IndexType.NONE
        and record.dimensions > record.storage.max_indexed_dimensions
    ):
        raise InvalidInput(
            f"{record.dimensions} dimensions is too wide for an index on {record.storage}"
            f" (at most {record.storage.max_indexed_dimensions}); create the collection with"
            " storage halfvec",
            field="type",
        )
    rows = await target.chunks.count()
    probes = None
    if spec.type is IndexType.IVFFLAT:
        if rows == 0:
            raise Conflict(
                f"collection {record.name!r} is empty: IVFFlat learns its lists from the "
                "stored vectors, so load the data first and build it after",
                field="type",
            )
        lists = spec.lists or lists_for(rows)
        if lists > rows:
            raise InvalidInput(f"lists ({lists}) exceeds the rows ({rows})", field="lists")
        spec, probes = replace(spec, lists=lists), probes_for(lists)
    await deps.store.indexes.build(
        record,
        spec,
        rows=rows,
        probes=probes,
        memory_cap_bytes=deps.limits.index_build_memory_bytes,
    )
    forget_cached(deps, record.name)
    return await report(deps, collection, sample=0)


async def defer(deps: Deps, target: Collection) -> bool:
    """Before a bulk load: drop an empty collection's HNSW index, to build it once at the end
    (store.indexes.IndexAdmin.defer says when it declines)."""
    return await deps.store.indexes.defer(target.record)


async def finish_deferred(deps: Deps, collection: str) -> IndexReport | None:
    """Build the index a bulk load deferred (also one left by an interrupted load)."""
    deferred = (await resolve(deps, collection)).record.deferred_index
    if deferred is None:
        return None
    spec = IndexSpec(
        IndexType(deferred["type"]),
        m=deferred.get("m", IndexSpec.m),
        ef_construction=deferred.get("ef_construction", IndexSpec.ef_construction),
    )
    try:
        return await build(deps, collection, spec)
    except Conflict:  # another process is building it (a concurrent load finishing)
        return None


async def progress(deps: Deps, collection: str) -> IndexBuildProgress | None:
    """A build running on the collection right now, as PostgreSQL reports it."""
    return await deps.store.indexes.progress((await resolve(deps, collection)).record)


async def report(deps: Deps, collection: str, *, sample: int = 50, k: int = 10) -> IndexReport:
    if not 0 <= sample <= MAX_SAMPLE:
        raise InvalidInput(f"sample must be between 0 and {MAX_SAMPLE}", field="sample")
    if not 1 <= k <= 100:
        raise InvalidInput("k must be between 1 and 100", field="k")
    forget_cached(deps, collection)
    target = await resolve(deps, collection)
    record, indexes = target.record, deps.store.indexes
    rows = await target.chunks.count()
    found = await indexes.vector_indexes(record)
    index = _current(found)
    index_type = index.type if index else IndexType.NONE
    recall, sampled = None, 0
    if sample and rows:
        vectors = await indexes.sample_vectors(record, sample, rows)
        sampled = len(vectors)
        recall = await _recall(target, vectors, k) if sampled else None
    health = IndexReport(
        collection=record.name,
        type=index_type,
        options=index.options if index else {},
        opclass=index.opclass if index else None,
        storage=record.storage,
        dimensions=record.dimensions,
        rows=rows,
        index_rows=record.index_rows,
        index_bytes=sum(i.size_bytes for i in found),
        table_bytes=await indexes.table_size(record),
        valid=all(i.valid for i in found),
        ef_search=target.chunks.ef_search if index_type is IndexType.HNSW else None,
        probes=record.probes if index_type is IndexType.IVFFLAT else None,
        built_at=record.index_built_at,
        recall_at_k=recall,
        k=k,
        sample=sampled,
        advice=[],
        build=await indexes.progress(record),
        deferred=record.deferred_index is not None,
    )
    return replace(health, advice=advise(health, await indexes.shared_buffers_bytes()))


async def _recall(target: Collection, queries: np.ndarray, k: int) -> float:
    """Stored vectors as queries: the ANN top-k against the exact top-k, as the collection
    answers searches by default."""
    distance = target.record.layout.index_distance
    overlaps = []
    for query in queries:
        found = [
            {
                hit.chunk_id
                for hit in await target.chunks.search(
                    query, limit=k, distance=distance, exact=exact
                )
            }
            for exact in (False, True)
        ]
        if found[1]:
            overlaps.append(len(found[0] & found[1]) / len(found[1]))
    return float(np.mean(overlaps)) if overlaps else 1.0


def _current(indexes: list[VectorIndexState]) -> VectorIndexState | None:
    """The index searches use (a leftover from a failed build does not count)."""
    valid = [i for i in indexes if i.valid and not i.name.endswith("_vec_build")]
    return valid[0] if valid else None


def advise(report: IndexReport, shared_buffers_bytes: int) -> list[str]:
    """Plain advice from a report; empty when nothing needs doing."""
    advice = []
    name = report.collection
    if not report.valid and report.build is None:  # a running build is invalid until done
        advice.append(
            "an interrupted build left an invalid index behind; rebuild the index "
            f"(embedsearch index build {name})"
        )
    if report.deferred:
        advice.append(
            "a bulk load dropped the index to build it at its end and did not finish; re-run "
            f"the ingest, or build it now (embedsearch index build {name})"
        )
    elif report.type is IndexType.NONE and report.rows >= UNINDEXED_ROWS_ADVICE:
        advice.append(
            f"{report.rows} rows and no ANN index: every search scans the whole table; "
            f"build one (embedsearch index build {name} --type hnsw)"
        )
    if report.type is IndexType.IVFFLAT:
        lists = report.options.get("lists", 0)
        trained = report.index_rows
        if trained is None or report.rows > 2 * trained or report.rows < trained // 2:
            advice.append(
                f"the IVFFlat lists were trained on {trained if trained is not None else 'an unknown number of'}"
                f" rows and the collection now has {report.rows}; rebuild it so the lists fit"
                f" the data (recommended lists now: {lists_for(report.rows)}, built with {lists})"
            )
    if report.recall_at_k is not None and report.recall_at_k < RECALL_ADVICE:
        if report.type is IndexType.HNSW:
            advice.append(
                f"estimated recall@{report.k} is {report.recall_at_k:.3f}: raise efSearch per "
                f"request or EMBEDSEARCH_EF_SEARCH (now {report.ef_search}), or rebuild with "
                "larger m/efConstruction"
            )
        elif report.type is IndexType.IVFFLAT:
            advice.append(
                f"estimated recall@{report.k} is {report.recall_at_k:.3f}: raise probes per "
                f"request (default {report.probes}), or rebuild with lists fitted to the rows"
            )
    if report.index_bytes > shared_buffers_bytes:
        advice.append(
            f"the index ({report.index_bytes // 2**20} MiB) is larger than shared_buffers "
            f"({shared_buffers_bytes // 2**20} MiB): searches will read from disk; raise "
            "shared_buffers"
            + (", or use halfvec storage to halve it" if report.storage is Storage.VECTOR else "")
        )
    return advice

"""Ingest many documents: read -> chunk and diff -> embed -> write, as a pipeline.

Three stages run at once, joined by short queues: chunking the next batch (event loop
thread), embedding the current one (model worker thread) and writing the previous one
(PostgreSQL). Each batch is written in one transaction, so an interrupted run leaves only
whole documents behind, and a re-run skips every document already stored unchanged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from embedsearch.core import documents, indexing
from embedsearch.core.chunking import ChunkingOptions
from embedsearch.core.collections import resolve
from embedsearch.core.deps import Deps
from embedsearch.core.documents import DocumentInput, IngestOutcome, Plan
from embedsearch.core.errors import InvalidInput, StaleDocument
from embedsearch.embedders.base import Vectors
from embedsearch.ingest.readers import ReadFailure, Source, read

BATCH_CHARS = 400_000  # roughly 300-400 model-window chunks of English text
BATCH_DOCUMENTS = 256
_QUEUE = 2  # batches waiting between stages


@dataclass
class Summary:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: list[ReadFailure] = field(default_factory=list)
    chunks_written: int = 0
    chunks_embedded: int = 0
    seconds: float = 0.0
    index_seconds: float | None = None  # building the index a bulk load deferred

    @property
    def documents(self) -> int:
        return self.new + self.updated + self.unchanged

    def add(self, outcome: IngestOutcome) -> None:
        self.new += len(outcome.new)
        self.updated += len(outcome.updated)
        self.unchanged += len(outcome.unchanged)
        self.chunks_written += sum(len(ids) for ids in outcome.chunks.values())
        self.chunks_embedded += outcome.embedded


ProgressCallback = Callable[[int, int], None]  # (documents done, chunks embedded) since last call


def _documents(
    sources: Iterable[Source],
    summary: Summary,
    deps: Deps,
    on_progress: ProgressCallback | None,
) -> Iterator[DocumentInput]:
    seen: set[str] = set()

    def fail(failure: ReadFailure) -> None:
        summary.failed.append(failure)
        if on_progress is not None:
            on_progress(1, 0)

    for source in sources:
        for item in read(source):
            if isinstance(item, ReadFailure):
                fail(item)
                continue
            try:
                documents.validate(deps, [item])
            except InvalidInput as exc:
                fail(ReadFailure(f"{source.path} ({item.document_id})", exc.message))
                continue
            if item.document_id in seen:
                fail(ReadFailure(str(source.path), f"duplicate document id {item.document_id!r}"))
                continue
            seen.add(item.document_id)
            yield item


def _batches(docs: Iterator[DocumentInput]) -> Iterator[list[DocumentInput]]:
    batch: list[DocumentInput] = []
    size = 0
    for doc in docs:
        batch.append(doc)
        size += len(doc.text)
        if size >= BATCH_CHARS or len(batch) >= BATCH_DOCUMENTS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


async def ingest(
    deps: Deps,
    sources: Sequence[Source],
    *,
    collection: str | None = None,
    options: ChunkingOptions | None = None,
    on_progress: ProgressCallback | None = None,
    expected_documents: int | None = None,
) -> Summary:
    """Ingest `sources`. A load of at least `deps.limits.defer_index_min_documents`
    (`expected_documents`) into an empty collection drops its HNSW index first and builds it
    once at the end; a run that stops midway leaves that to the next run (or `index build`)."""
    summary = Summary()
    options = options or ChunkingOptions()
    target = await resolve(deps, collection)
    started = time.perf_counter()
    threshold = deps.limits.defer_index_min_documents
    if threshold and expected_documents is not None and expected_documents >= threshold:
        await indexing.defer(deps, target)
    planned: asyncio.Queue[tuple[list[DocumentInput], Plan] | None] = asyncio.Queue(_QUEUE)
    embedded: asyncio.Queue[tuple[list[DocumentInput], Plan, Vectors] | None] = asyncio.Queue(
        _QUEUE
    )

    async def plan_stage() -> None:
        for batch in _batches(_documents(sources, summary, deps, on_progress)):
            await planned.put((batch, await documents.prepare(batch, target, options)))
            await asyncio.sleep(0)  # let the other stages run between batches
        await planned.put(None)

    async def embed_stage() -> None:
        while (item := await planned.get()) is not None:
            batch, plan = item
            await embedded.put((batch, plan, await documents.embed_plan(plan)))
        await embedded.put(None)

    async def write_stage() -> None:
        while (item := await embedded.get()) is not None:
            batch, plan, vectors = item
            outcome = await _write(deps, batch, plan, vectors, options)
            summary.add(outcome)
            if on_progress is not None:
                on_progress(len(batch), outcome.embedded)

    async with asyncio.TaskGroup() as group:
        group.create_task(plan_stage())
        group.create_task(embed_stage())
        group.create_task(write_stage())
    await target.chunks.bm25.compact()  # the load's statistics deltas, folded once
    index_started = time.perf_counter()
    if await indexing.finish_deferred(deps, target.record.name) is not None:
        summary.index_seconds = time.perf_counter() - index_started
    summary.seconds = time.perf_counter() - started
    return summary


async def _write(
    deps: Deps,
    batch: list[DocumentInput],
    plan: Plan,
    vectors: Vectors,
    options: ChunkingOptions,
) -> IngestOutcome:
    try:
        return await documents.write_plan(plan, vectors)
    except StaleDocument:  # someone else rewrote one of these documents meanwhile: redo it
        name = plan.target.record.name
        return await documents.put(deps, batch, collection=name, options=options)

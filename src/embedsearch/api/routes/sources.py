"""Sources: tables in PostgreSQL kept in sync as documents of a collection."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from embedsearch.api.deps import DepsDep
from embedsearch.api.limits import JsonRoute
from embedsearch.api.schemas import ERROR_RESPONSES
from embedsearch.api.source_schemas import (
    BackfillProgress,
    SourceCounters,
    SourceCreate,
    SourceList,
    SourcePublic,
    Throughput,
)
from embedsearch.core import sources
from embedsearch.core.sources import SourceInput, SourceStatus, masked_url

router = APIRouter(tags=["sources"], route_class=JsonRoute)


def _public(found: SourceStatus) -> SourcePublic:
    record, spec = found.record, found.record.spec
    return SourcePublic(
        name=spec.name,
        url=masked_url(spec),
        table=f"{spec.schema}.{spec.table}",
        idColumn=spec.id_column,
        textColumns=list(spec.text_columns),
        metadataColumns=list(spec.metadata_columns),
        where=spec.row_filter,
        collection=spec.collection,
        state=found.state,
        pending=found.pending,
        lagSeconds=found.lag_seconds,
        lastError=found.error,
        lastErrorAt=record.last_error_at,
        lastSyncedAt=record.last_synced_at,
        workerRunning=found.worker_running,
        backfill=BackfillProgress(
            done=record.backfill_done,
            total=record.backfill_total,
            finished=record.phase == "live",
        ),
        throughput=Throughput(
            rowsPerSecond=record.rows_per_second, embedsPerSecond=record.embeds_per_second
        ),
        counters=SourceCounters(
            rowsSynced=record.rows_synced,
            rowsDeleted=record.rows_deleted,
            rowsSkipped=record.rows_skipped,
            chunksEmbedded=record.chunks_embedded,
        ),
        createdAt=record.created_at,
    )


@router.post("/sources", status_code=201, response_model=SourcePublic, responses=ERROR_RESPONSES)
async def add_source(body: SourceCreate, deps: DepsDep) -> SourcePublic:
    """Keep a table's rows as documents of a collection: change capture (a trigger into a queue
    table) is created in the source database, existing rows are backfilled, then changes
    follow within seconds. Everything is checked first: on a 4xx nothing was created there."""
    given = SourceInput(
        name=body.name,
        table=body.table,
        id_column=body.idColumn,
        text_columns=body.textColumns,
        collection=body.collection,
        url=body.url,
        metadata_columns=body.metadataColumns,
        row_filter=body.where,
    )
    record = await sources.add(deps, given)
    return _public(await sources.status(deps, record))


@router.get("/sources", response_model=SourceList)
async def list_sources(deps: DepsDep) -> SourceList:
    return SourceList(sources=[_public(s) for s in await sources.list_all(deps)])


@router.get("/sources/{name}", response_model=SourcePublic, responses=ERROR_RESPONSES)
async def get_source(name: str, deps: DepsDep) -> SourcePublic:
    """State, pending changes, lag (age of the oldest pending change), backfill progress,
    throughput and the last error."""
    return _public(await sources.get(deps, name))


@router.delete("/sources/{name}", status_code=204, responses=ERROR_RESPONSES)
async def delete_source(
    name: str,
    deps: DepsDep,
    force: Annotated[
        bool,
        Query(
            description="Forget the source even if its database cannot be reached (its"
            " trigger, function and queue then stay there)."
        ),
    ] = False,
) -> None:
    """Remove the trigger, function and queue the source created in its database (nothing
    else: the table, and the collection with its documents, stay). 503 if the source's
    database cannot be reached, unless `force`."""
    await sources.delete(deps, name, force=force)

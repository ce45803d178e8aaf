"""Model migrations: a collection embedded again by another model, then switched to by name."""

from __future__ import annotations

from fastapi import APIRouter, Response

from embedsearch.api.deps import DepsDep
from embedsearch.api.limits import JsonRoute
from embedsearch.api.migration_schemas import MigrationCreate, MigrationPublic
from embedsearch.api.schemas import ERROR_RESPONSES
from embedsearch.core import model_migration
from embedsearch.store.model_migrations import MigrationRecord

router = APIRouter(tags=["migrations"], route_class=JsonRoute)


def _public(record: MigrationRecord) -> MigrationPublic:
    return MigrationPublic.model_validate(model_migration.describe(record))


@router.post(
    "/collections/{name}/migrate",
    response_model=MigrationPublic,
    status_code=202,
    responses=ERROR_RESPONSES,
)
async def migrate(
    name: str, body: MigrationCreate, deps: DepsDep, response: Response
) -> MigrationPublic:
    """Start building a copy of the collection with another model, in the background; writes
    to the collection meanwhile reach the copy too. Asking again for the same model returns
    the running migration (200)."""
    record, new = await model_migration.start(
        deps,
        name,
        embedder=body.embedder,
        dimensions=body.dimensions,
        switch=body.switch,
        queries=body.queries,
        judgments=body.judgments,
    )
    if not new:
        response.status_code = 200
    return _public(record)


@router.get(
    "/collections/{name}/migration", response_model=MigrationPublic, responses=ERROR_RESPONSES
)
async def migration_status(name: str, deps: DepsDep) -> MigrationPublic:
    """Progress, pending writes and the comparison of the newest migration of the collection."""
    return _public(await model_migration.status(deps, name))


@router.post(
    "/collections/{name}/migration/switch",
    response_model=MigrationPublic,
    status_code=202,
    responses=ERROR_RESPONSES,
)
async def switch(name: str, deps: DepsDep) -> MigrationPublic:
    """Switch the name and its aliases to the new collection once it is complete."""
    return _public(await model_migration.ask_switch(deps, name))


@router.delete(
    "/collections/{name}/migration", response_model=MigrationPublic, responses=ERROR_RESPONSES
)
async def cancel(name: str, deps: DepsDep) -> MigrationPublic:
    """Stop a running migration and drop its new collection; the old one is untouched."""
    return _public(await model_migration.cancel(deps, name))

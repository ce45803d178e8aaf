"""Aliases: other names for collections (`POST /aliases` makes or re-points one atomically)."""

from __future__ import annotations

from fastapi import APIRouter

from embedsearch.api.deps import DepsDep
from embedsearch.api.limits import JsonRoute
from embedsearch.api.schemas import (
    ERROR_RESPONSES,
    AliasDeleted,
    AliasList,
    AliasPublic,
    AliasSet,
    AliasSetResponse,
)
from embedsearch.core import aliases
from embedsearch.store.aliases import AliasRecord

router = APIRouter(tags=["aliases"], route_class=JsonRoute)


def _public(alias: AliasRecord) -> AliasPublic:
    return AliasPublic(name=alias.name, collection=alias.collection, updatedAt=alias.updated_at)


@router.post("/aliases", response_model=AliasSetResponse, responses=ERROR_RESPONSES)
async def set_alias(body: AliasSet, deps: DepsDep) -> AliasSetResponse:
    """Make an alias, or point an existing one at another collection (one atomic switch:
    requests see the old collection or the new one, never neither)."""
    alias, previous = await aliases.set_alias(deps, body.name, body.collection)
    return AliasSetResponse(**_public(alias).model_dump(), previous=previous)


@router.get("/aliases", response_model=AliasList, responses=ERROR_RESPONSES)
async def list_aliases(deps: DepsDep) -> AliasList:
    return AliasList(aliases=[_public(a) for a in await aliases.list_aliases(deps)])


@router.get("/aliases/{name}", response_model=AliasPublic, responses=ERROR_RESPONSES)
async def get_alias(name: str, deps: DepsDep) -> AliasPublic:
    return _public(await aliases.get_alias(deps, name))


@router.delete("/aliases/{name}", response_model=AliasDeleted, responses=ERROR_RESPONSES)
async def drop_alias(name: str, deps: DepsDep) -> AliasDeleted:
    """Remove an alias; its collection stays."""
    return AliasDeleted(name=name, collection=await aliases.drop_alias(deps, name))

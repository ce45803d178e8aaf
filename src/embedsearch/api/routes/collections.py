"""Collections: each has its own model, dimensions, default distance and chunks."""

from __future__ import annotations

from fastapi import APIRouter

from embedsearch.api.deps import ServiceDep
from embedsearch.api.schemas import (
    ERROR_RESPONSES,
    CollectionCreate,
    CollectionList,
    CollectionPublic,
)
from embedsearch.store.records import CollectionRecord

router = APIRouter(tags=["collections"])


def _public(record: CollectionRecord, count: int) -> CollectionPublic:
    return CollectionPublic(
        name=record.name,
        model=record.model,
        dimensions=record.dimensions,
        embedder=record.embedder,
        distance=record.distance,
        count=count,
        createdAt=record.created_at,
    )


@router.post(
    "/collections", status_code=201, response_model=CollectionPublic, responses=ERROR_RESPONSES
)
async def create_collection(body: CollectionCreate, service: ServiceDep) -> CollectionPublic:
    """Create a collection (409 if the name is taken)."""
    record = await service.create_collection(
        body.name, embedder=body.embedder, dimensions=body.dimensions, distance=body.distance
    )
    return _public(record, 0)


@router.get("/collections", response_model=CollectionList)
async def list_collections(service: ServiceDep) -> CollectionList:
    return CollectionList(collections=[_public(r, n) for r, n in await service.collections()])


@router.get("/collections/{name}", response_model=CollectionPublic, responses=ERROR_RESPONSES)
async def get_collection(name: str, service: ServiceDep) -> CollectionPublic:
    return _public(*await service.collection(name))


@router.delete("/collections/{name}", status_code=204, responses=ERROR_RESPONSES)
async def drop_collection(name: str, service: ServiceDep) -> None:
    """Drop a collection and all its chunks and documents."""
    await service.drop_collection(name)

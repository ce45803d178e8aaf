"""Collections: each has its own model, dimensions, default distance, storage, index and
chunks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from embedsearch.api.deps import DepsDep
from embedsearch.api.limits import JsonRoute
from embedsearch.api.schemas import (
    ERROR_RESPONSES,
    CollectionCreate,
    CollectionList,
    CollectionPublic,
    CollectionUpdate,
    IndexBuildPublic,
    IndexPublic,
    IndexRequest,
    RecallEstimate,
    ShardingPublic,
)
from embedsearch.core import collections, indexing
from embedsearch.core.indexing import MAX_SAMPLE, IndexReport
from embedsearch.core.vector_index import IndexSpec
from embedsearch.store.citus import SHARD_KEY
from embedsearch.store.records import CollectionOptions, CollectionRecord

router = APIRouter(tags=["collections"], route_class=JsonRoute)


def _public(record: CollectionRecord, count: int) -> CollectionPublic:
    return CollectionPublic(
        name=record.name,
        model=record.model,
        dimensions=record.dimensions,
        embedder=record.embedder,
        distance=record.distance,
        storage=record.storage,
        normalized=record.normalized,
        textConfig=record.text_config,
        fusion=record.fusion,
        sharding=ShardingPublic(shards=record.shards, distributionColumn=SHARD_KEY)
        if record.shards is not None
        else None,
        count=count,
        createdAt=record.created_at,
    )


@router.post(
    "/collections", status_code=201, response_model=CollectionPublic, responses=ERROR_RESPONSES
)
async def create_collection(body: CollectionCreate, deps: DepsDep) -> CollectionPublic:
    """Create a collection (409 if the name is taken)."""
    options = CollectionOptions(
        distance=body.distance,
        storage=body.storage,
        normalized=body.normalize,
        index=body.index.spec() if body.index else IndexSpec(),
        text_config=body.textConfig,
        shards=body.sharding.shards if body.sharding else None,
    )
    record = await collections.create(
        deps, body.name, embedder=body.embedder, dimensions=body.dimensions, options=options
    )
    return _public(record, 0)


@router.get("/collections", response_model=CollectionList)
async def list_collections(deps: DepsDep) -> CollectionList:
    return CollectionList(collections=[_public(r, n) for r, n in await collections.list_all(deps)])


@router.get("/collections/{name}", response_model=CollectionPublic, responses=ERROR_RESPONSES)
async def get_collection(name: str, deps: DepsDep) -> CollectionPublic:
    return _public(*await collections.get(deps, name))


@router.patch("/collections/{name}", response_model=CollectionPublic, responses=ERROR_RESPONSES)
async def update_collection(name: str, body: CollectionUpdate, deps: DepsDep) -> CollectionPublic:
    """Change a collection's settings; fields left out stay as they are. `fusion`: hybrid
    search's default (null: the built-in one)."""
    if "fusion" in body.model_fields_set:
        fusion = body.fusion.fusion() if body.fusion is not None else None
        await collections.set_fusion(deps, name, fusion)
    return _public(*await collections.get(deps, name))


@router.delete("/collections/{name}", status_code=204, responses=ERROR_RESPONSES)
async def drop_collection(name: str, deps: DepsDep) -> None:
    """Drop a collection and all its chunks and documents."""
    await collections.drop(deps, name)


@router.post("/collections/{name}/index", response_model=IndexPublic, responses=ERROR_RESPONSES)
async def build_index(name: str, body: IndexRequest, deps: DepsDep) -> IndexPublic:
    """Build or rebuild the collection's ANN index (type none drops it: exact scans). The new
    index is built beside the old one, so searches and writes go on meanwhile; the call
    returns when it is in place. GET /collections/{name}/index shows a running build's
    progress. IVFFlat needs the data loaded first (its lists are trained on it)."""
    return _index_public(await indexing.build(deps, name, body.spec()))


@router.get("/collections/{name}/index", response_model=IndexPublic, responses=ERROR_RESPONSES)
async def index_health(
    name: str,
    deps: DepsDep,
    sample: Annotated[int, Query(ge=0, le=MAX_SAMPLE, description="Vectors to test")] = 50,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
) -> IndexPublic:
    """Index type, parameters, size, a live recall@k estimate (stored vectors as queries, ANN
    top-k against exact top-k) and plain advice."""
    return _index_public(await indexing.report(deps, name, sample=sample, k=k))


def _index_public(report: IndexReport) -> IndexPublic:
    build = report.build
    return IndexPublic(
        collection=report.collection,
        type=report.type,
        options=report.options,
        opclass=report.opclass,
        storage=report.storage,
        dimensions=report.dimensions,
        rows=report.rows,
        indexRows=report.index_rows,
        indexBytes=report.index_bytes,
        tableBytes=report.table_bytes,
        valid=report.valid,
        efSearch=report.ef_search,
        probes=report.probes,
        builtAt=report.built_at,
        recall=(
            RecallEstimate(k=report.k, sample=report.sample, recall=report.recall_at_k)
            if report.recall_at_k is not None
            else None
        ),
        advice=report.advice,
        build=(
            IndexBuildPublic(
                phase=build.phase,
                blocksDone=build.blocks_done,
                blocksTotal=build.blocks_total,
                tuplesDone=build.tuples_done,
                tuplesTotal=build.tuples_total,
            )
            if build
            else None
        ),
    )

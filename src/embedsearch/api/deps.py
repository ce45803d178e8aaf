"""Dependencies for route handlers.

All are `async def`: FastAPI runs a plain `def` dependency in its thread pool, a thread hop
on every request for what is an attribute lookup."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from embedsearch.documents import DocumentService
from embedsearch.errors import NotReady
from embedsearch.indexing import IndexManager
from embedsearch.service import SearchService


async def get_service(request: Request) -> SearchService:
    service: SearchService | None = getattr(request.app.state, "service", None)
    if service is None:
        raise NotReady("the service is starting")
    return service


ServiceDep = Annotated[SearchService, Depends(get_service)]


async def get_documents(service: ServiceDep) -> DocumentService:
    return DocumentService(service)


DocumentsDep = Annotated[DocumentService, Depends(get_documents)]


async def get_indexes(service: ServiceDep) -> IndexManager:
    return IndexManager(service)


IndexesDep = Annotated[IndexManager, Depends(get_indexes)]

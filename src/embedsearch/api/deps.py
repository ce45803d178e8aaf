"""Dependencies for route handlers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from embedsearch.documents import DocumentService
from embedsearch.errors import NotReady
from embedsearch.indexing import IndexManager
from embedsearch.service import SearchService


def get_service(request: Request) -> SearchService:
    service: SearchService | None = getattr(request.app.state, "service", None)
    if service is None:
        raise NotReady("the service is starting")
    return service


ServiceDep = Annotated[SearchService, Depends(get_service)]


def get_documents(service: ServiceDep) -> DocumentService:
    return DocumentService(service)


DocumentsDep = Annotated[DocumentService, Depends(get_documents)]


def get_indexes(service: ServiceDep) -> IndexManager:
    return IndexManager(service)


IndexesDep = Annotated[IndexManager, Depends(get_indexes)]

"""Dependencies for route handlers.

All are `async def`: FastAPI runs a plain `def` dependency in its thread pool, a thread hop
on every request for what is an attribute lookup."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from embedsearch.core.deps import Deps
from embedsearch.core.errors import NotReady


async def get_deps(request: Request) -> Deps:
    deps: Deps | None = getattr(request.app.state, "deps", None)
    if deps is None:
        raise NotReady("the service is starting")
    return deps


DepsDep = Annotated[Deps, Depends(get_deps)]

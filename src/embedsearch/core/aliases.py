"""Aliases: another name for a collection, taken wherever a collection name is (search, chunks,
documents, sources). Re-pointing one is atomic: a client that addresses a collection by its
alias reaches the new collection after the switch without any change of its own."""

from __future__ import annotations

from embedsearch.core.deps import Deps
from embedsearch.core.errors import NotFound
from embedsearch.core.validation import check_collection_name
from embedsearch.store.aliases import AliasRecord


async def set_alias(deps: Deps, name: str, collection: str) -> tuple[AliasRecord, str | None]:
    """Point alias `name` at `collection` (made, or moved); returns it and its old target."""
    check_collection_name(name, field="name")
    check_collection_name(collection)
    return await deps.store.aliases.set(name, collection)


async def list_aliases(deps: Deps) -> list[AliasRecord]:
    return await deps.store.aliases.list()


async def get_alias(deps: Deps, name: str) -> AliasRecord:
    alias = await deps.store.aliases.get(check_collection_name(name, field="name"))
    if alias is None:
        raise NotFound(f"alias {name!r} does not exist", field="name")
    return alias


async def drop_alias(deps: Deps, name: str) -> str:
    """Remove an alias (its collection stays); returns the collection it named."""
    collection = await deps.store.aliases.drop(check_collection_name(name, field="name"))
    if collection is None:
        raise NotFound(f"alias {name!r} does not exist", field="name")
    return collection

"""Request and response bodies of model migrations (POST /collections/{name}/migrate)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from embedsearch.api.schemas import RequestModel


class MigrationCreate(RequestModel):
    embedder: str = Field(
        examples=["openai:text-embedding-3-small"],
        description="The new model, as a collection's embedder is given (provider:model).",
    )
    dimensions: int | None = Field(
        default=None, description="The new model's size, where it takes one."
    )
    switch: bool = Field(
        default=False,
        description="Switch the name (and aliases) to the new collection as soon as it is "
        "complete; otherwise POST /collections/{name}/migration/switch does.",
    )
    queries: list[str] | None = Field(
        default=None, description="Sample queries to compare the rankings on (default: sampled)."
    )
    judgments: dict[str, Any] | None = Field(
        default=None,
        description='BEIR-style {"queries": {id: text}, "qrels": {id: {documentId: relevance}}}:'
        " nDCG@10 of both models is reported.",
    )


class BackfillCount(BaseModel):
    done: int
    total: int


class MigrationPublic(BaseModel):
    id: int
    name: str = Field(description="Asked for by this name; after the switch it names `target`.")
    source: str = Field(description="The collection migrated from (kept until dropped).")
    target: str = Field(description="The new collection, filled by the new model.")
    embedder: str
    dimensions: int | None
    state: str = Field(description="backfill, ready, switched, cancelled or failed.")
    switchAsked: bool
    backfill: BackfillCount
    pending: int = Field(description="Writes to the old collection not yet applied to the new.")
    applied: int
    embedded: int
    comparison: dict[str, Any] | None = Field(
        description="overlapAt10 on sample queries (and ndcgAt10 old/new with judgments)."
    )
    archivedAs: str | None = Field(description="The old collection's name after the switch.")
    lastError: str | None
    createdAt: datetime
    switchedAt: datetime | None

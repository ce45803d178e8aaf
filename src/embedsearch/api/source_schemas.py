"""Request and response bodies of /sources (camelCase, as the other endpoints)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from embedsearch.api.schemas import RequestModel
from embedsearch.core.constants import COLLECTION_NAME_PATTERN


class SourceCreate(RequestModel):
    name: str = Field(pattern=f"^{COLLECTION_NAME_PATTERN}$", examples=["articles"])
    url: str | None = Field(
        default=None,
        description="postgresql:// URL of the source database (default: the service's own)."
        " Stored as a secret: answers show it with the password masked.",
    )
    table: str = Field(description="'table' or 'schema.table'.", examples=["public.articles"])
    idColumn: str = Field(description="A primary key or unique column.", examples=["id"])
    textColumns: list[str] = Field(
        min_length=1, description="Joined with blank lines into the document's text."
    )
    metadataColumns: list[str] = Field(default_factory=list)
    where: str | None = Field(
        default=None,
        description="A row filter, one SQL expression over the table's columns, run in the"
        " source database with the URL's privileges (read-only transactions).",
        examples=["lang = 'en'"],
    )
    collection: str = Field(description="Target collection, created if absent.")


class BackfillProgress(BaseModel):
    done: int = Field(description="Rows read so far.")
    total: int | None = Field(description="Rows the filter took when the source was added.")
    finished: bool


class Throughput(BaseModel):
    rowsPerSecond: float = Field(description="Rows stored or removed, over the last minute.")
    embedsPerSecond: float = Field(description="Chunks embedded, over the last minute.")


class SourceCounters(BaseModel):
    rowsSynced: int
    rowsDeleted: int
    rowsSkipped: int = Field(description="Rows the documents API refused (lastError says why).")
    chunksEmbedded: int


class SourcePublic(BaseModel):
    name: str
    url: str | None = Field(description="Password masked; null: the service's own database.")
    table: str
    idColumn: str
    textColumns: list[str]
    metadataColumns: list[str]
    where: str | None
    collection: str
    state: Literal["backfilling", "live", "error", "stopped"]
    pending: int | None = Field(description="Changes not yet stored (null: source unreachable).")
    lagSeconds: float | None = Field(description="Age of the oldest pending change.")
    lastError: str | None
    lastErrorAt: datetime | None
    lastSyncedAt: datetime | None
    workerRunning: bool
    backfill: BackfillProgress
    throughput: Throughput
    counters: SourceCounters
    createdAt: datetime


class SourceList(BaseModel):
    sources: list[SourcePublic]

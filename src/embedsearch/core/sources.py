"""Sources: a table in any PostgreSQL whose rows are kept as documents of a collection.

`add` checks everything (the URL connects, the table and columns exist, the id is unique, the
text columns are text, the filter plans) before it creates anything, then creates the change
capture in the source database in one transaction. `status` reads the progress the sync
worker (core/source_sync.py) recorded and, live, the source's queue. `delete` removes what
`add` created in the source database and the registry row; the collection stays.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import psycopg

from embedsearch.core import collections
from embedsearch.core.constants import COLLECTION_NAME_PATTERN
from embedsearch.core.deps import Deps
from embedsearch.core.errors import Conflict, InvalidInput, NotFound, SourceUnavailable
from embedsearch.core.validation import check_collection_name
from embedsearch.logs import url_redactor
from embedsearch.store.database import Connection, first_line
from embedsearch.store.source_db import Capture, SourceDatabase, TableFacts
from embedsearch.store.sources import SourceRecord, SourceSpec

SOURCE_NAME = re.compile(COLLECTION_NAME_PATTERN)  # part of the capture objects' names
# A PostgreSQL identifier as it is written unquoted (any case); always quoted when used.
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
MAX_FILTER_CHARS = 4000
# Text columns: PostgreSQL's string type category (text, varchar, char, name, citext).
_STRING_CATEGORY = "S"
_TABLE_KINDS = {"r": "table", "p": "partitioned table"}


def capture_of(spec: SourceSpec) -> Capture:
    """The capture objects' names in the source database, from the source's name."""
    return Capture(
        schema=spec.schema,
        table=spec.table,
        id_column=spec.id_column,
        text_columns=spec.text_columns,
        metadata_columns=spec.metadata_columns,
        row_filter=spec.row_filter,
        queue=f"embedsearch_queue_{spec.name}",
        function=f"embedsearch_capture_{spec.name}",
        trigger=f"embedsearch_capture_{spec.name}",
    )


def source_database(deps: Deps, spec: SourceSpec, *, timeout_s: float = 5.0) -> SourceDatabase:
    url = source_url(deps, spec)
    return SourceDatabase(url, timeout_s=timeout_s, redact=url_redactor(url))


def masked_url(spec: SourceSpec) -> str | None:
    return None if spec.url is None else url_redactor(spec.url)(spec.url)


def check_identifier(value: str, field: str) -> str:
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise InvalidInput(
            f"{field} must be a plain identifier (letters, digits, _; not starting with a digit;"
            f" at most 63), not {value!r}",
            field=field,
        )
    return value


def split_table(table: str) -> tuple[str | None, str]:
    """ "schema.table" or "table" (the source's current schema)."""
    parts = table.split(".") if isinstance(table, str) else [table]
    if len(parts) > 2:
        raise InvalidInput(f"table must be 'table' or 'schema.table', not {table!r}", field="table")
    for part in parts:
        check_identifier(part, "table")
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def check_filter_text(row_filter: str | None) -> str | None:
    """The filter is SQL run in the source database with the URL's privileges (in a read-only
    transaction, always with the extended protocol). One expression: no `;`, no comments,
    which could hide the rest of the statement it is placed in."""
    if row_filter is None:
        return None
    if not row_filter.strip():
        raise InvalidInput(
            "where must not be empty (leave it out to take every row)", field="where"
        )
    if len(row_filter) > MAX_FILTER_CHARS:
        raise InvalidInput(f"where is over {MAX_FILTER_CHARS} characters", field="where")
    for banned in (";", "--", "/*", "\x00"):
        if banned in row_filter:
            raise InvalidInput(
                f"where must be one SQL expression, without {banned!r}", field="where"
            )
    return row_filter


@dataclass(frozen=True)
class SourceInput:
    """POST /sources and `embedsearch sources add`, as given."""

    name: str
    table: str
    id_column: str
    text_columns: Sequence[str]
    collection: str
    url: str | None = None
    metadata_columns: Sequence[str] = ()
    row_filter: str | None = None


def _checked_columns(given: SourceInput) -> None:
    check_identifier(given.id_column, "idColumn")
    if not given.text_columns:
        raise InvalidInput("textColumns must name at least one column", field="textColumns")
    for group, names in (
        ("textColumns", given.text_columns),
        ("metadataColumns", given.metadata_columns),
    ):
        for i, name in enumerate(names):
            check_identifier(name, f"{group}[{i}]")
        if len(set(names)) != len(names):
            raise InvalidInput(f"{group} names a column twice", field=group)


def _check_table(facts: TableFacts, spec: SourceSpec, shown: str) -> None:
    """Every objection the catalog gives, named by field, before anything is created."""
    if facts.oid is None:
        raise InvalidInput(f"table {shown!r} does not exist in the source database", field="table")
    if facts.kind not in _TABLE_KINDS:
        raise InvalidInput(
            f"{shown!r} is not a table (views cannot have row triggers)", field="table"
        )
    named = [("idColumn", spec.id_column)]
    named += [(f"textColumns[{i}]", c) for i, c in enumerate(spec.text_columns)]
    named += [(f"metadataColumns[{i}]", c) for i, c in enumerate(spec.metadata_columns)]
    for field, column in named:
        if column not in facts.columns:
            raise InvalidInput(f"column {column!r} does not exist in table {shown!r}", field=field)
    for i, column in enumerate(spec.text_columns):
        category, declared = facts.columns[column]
        if category != _STRING_CATEGORY:
            raise InvalidInput(
                f"text column {column!r} is {declared}, not a text type", field=f"textColumns[{i}]"
            )
    if not facts.id_unique:
        raise InvalidInput(
            f"column {spec.id_column!r} is not unique in {shown!r}: it needs a primary key or a"
            " unique index on that column alone",
            field="idColumn",
        )
    missing = [
        right
        for right, held in (
            (f"SELECT on {shown}", facts.can_select),
            (f"TRIGGER on {shown}", facts.can_trigger),
            (f"CREATE in schema {spec.schema}", facts.can_create),
        )
        if not held
    ]
    if missing:
        raise InvalidInput(
            f"the source URL's user lacks {', '.join(missing)} (needed for change capture)",
            field="url",
        )
    if facts.existing:
        raise Conflict(
            f"the source database already has {', '.join(facts.existing)} (a source of this name"
            " made by another embedsearch database?); nothing was changed",
            field="name",
        )


async def add(deps: Deps, given: SourceInput, *, timeout_s: float = 5.0) -> SourceRecord:
    """Check, then create the capture objects (one transaction in the source database) and
    the registry row. On any objection nothing is created in the source database."""
    if not isinstance(given.name, str) or not SOURCE_NAME.fullmatch(given.name):
        raise InvalidInput(f"name must match ^{COLLECTION_NAME_PATTERN}$", field="name")
    schema, table = split_table(given.table)
    _checked_columns(given)
    row_filter = check_filter_text(given.row_filter)
    check_collection_name(given.collection, field="collection")
    if await deps.store.sources.get(given.name) is not None:
        raise Conflict(f"source {given.name!r} already exists", field="name")
    await _refuse_own_tables(deps, table, own_database=given.url is None)
    draft = SourceSpec(
        given.name,
        given.url,
        schema or "",
        table,
        given.id_column,
        tuple(given.text_columns),
        tuple(given.metadata_columns),
        row_filter,
        given.collection,
    )
    source = source_database(deps, draft, timeout_s=timeout_s)
    try:
        async with source.connect() as conn:
            spec = draft if schema else _with_schema(draft, await source.current_schema(conn))
            capture = capture_of(spec)
            total = await _checked(source, conn, capture, spec, given.table)
            await _install(source, conn, capture)
    except SourceUnavailable as exc:
        raise InvalidInput(exc.message, field="url") from None
    try:  # the collection only once the capture exists: a refusal above leaves nothing
        await collections.ensure(deps, spec.collection)
        registered = await deps.store.sources.register(spec, total)
    except BaseException:
        await _uninstall_quietly(source, capture)
        raise
    if not registered:  # another request took the name meanwhile
        await _uninstall_quietly(source, capture)
        raise Conflict(f"source {given.name!r} already exists", field="name")
    record = await deps.store.sources.get(spec.name)
    assert record is not None
    return record


async def _checked(
    source: SourceDatabase, conn: Connection, capture: Capture, spec: SourceSpec, shown: str
) -> int:
    """Every check against the source database (reads only); returns the rows to backfill."""
    _check_table(await source.inspect(conn, capture), spec, shown)
    objection = await source.check_filter(conn, capture)
    if objection is not None:
        raise InvalidInput(f"where is not a valid filter on {shown!r}: {objection}", field="where")
    try:
        return await source.count_rows(conn, capture)
    except psycopg.DatabaseError as exc:  # a filter that plans but fails on the rows
        if isinstance(exc, psycopg.OperationalError):
            raise
        field = "where" if spec.row_filter is not None else "table"
        raise InvalidInput(
            f"reading {shown!r} failed: {source.redact(first_line(exc))}", field=field
        ) from None


async def _install(source: SourceDatabase, conn: Connection, capture: Capture) -> None:
    """One transaction: on any refusal nothing stays in the source database."""
    try:
        await source.install(conn, capture)
    except psycopg.errors.LockNotAvailable:
        raise Conflict(
            "the table is locked by another transaction (creating the trigger waited 5 s for"
            " it); nothing was created: try again",
            field="table",
        ) from None
    except (psycopg.errors.DuplicateObject, psycopg.errors.DuplicateTable) as exc:
        raise Conflict(
            f"the source database already has it: {first_line(exc)}", field="name"
        ) from None
    except psycopg.DatabaseError as exc:
        if isinstance(exc, psycopg.OperationalError):
            raise
        raise InvalidInput(
            f"the source database refused: {source.redact(first_line(exc))}", field="url"
        ) from None


async def _refuse_own_tables(deps: Deps, table: str, *, own_database: bool) -> None:
    """Our queues, registries and chunk tables cannot be sources: a source on them would
    feed on its own writes."""
    ours = table.startswith("embedsearch_")
    if own_database and not ours:
        ours = table in {record.table for record in await deps.store.registry.list()}
    if ours:
        raise InvalidInput(f"table {table!r} is one of embedsearch's own", field="table")


def _with_schema(spec: SourceSpec, schema: str) -> SourceSpec:
    return replace(spec, schema=schema)


async def _uninstall_quietly(source: SourceDatabase, capture: Capture) -> None:
    try:
        async with source.connect() as conn:
            await source.uninstall(conn, capture)
    except (SourceUnavailable, psycopg.Error):
        pass  # the registry has no row for it; DELETE cannot reach it either: say nothing more


# error: the last attempt failed (or the source does not answer now); stopped: no worker runs.
SourceState = Literal["backfilling", "live", "error", "stopped"]


@dataclass(frozen=True)
class SourceStatus:
    record: SourceRecord
    state: SourceState
    pending: int | None  # queued changes not yet stored (None: the source is unreachable)
    lag_seconds: float | None  # age of the oldest of them
    worker_running: bool
    error: str | None  # the source's error now, else the last one recorded


def _state(record: SourceRecord, reachable: bool, worker: bool) -> SourceState:
    failing = record.last_error_at is not None and (
        record.last_synced_at is None or record.last_error_at > record.last_synced_at
    )
    if failing or not reachable:
        return "error"
    if not worker:
        return "stopped"
    return "backfilling" if record.phase == "backfill" else "live"


async def status(deps: Deps, record: SourceRecord, *, timeout_s: float = 2.0) -> SourceStatus:
    spec = record.spec
    source = source_database(deps, spec, timeout_s=timeout_s)
    pending: int | None = None
    lag: float | None = None
    error = record.last_error
    try:
        async with source.connect() as conn:
            pending, lag = await source.queue_status(conn, capture_of(spec))
    except SourceUnavailable as exc:
        error = exc.message
    except psycopg.Error as exc:  # e.g. the queue was dropped by hand
        error = f"cannot read the change queue: {source.redact(first_line(exc))}"
    worker = await deps.store.sources.worker_running(spec.name)
    return SourceStatus(
        record, _state(record, pending is not None, worker), pending, lag, worker, error
    )


def source_url(deps: Deps, spec: SourceSpec) -> str:
    return spec.url if spec.url is not None else deps.store.database.conninfo


async def get(deps: Deps, name: str) -> SourceStatus:
    record = await deps.store.sources.get(name)
    if record is None:
        raise NotFound(f"source {name!r} does not exist", field="name")
    return await status(deps, record)


async def list_all(deps: Deps) -> list[SourceStatus]:
    """Every source with its status, the sources' queues read concurrently."""
    return list(await asyncio.gather(*(status(deps, r) for r in await deps.store.sources.list())))


async def delete(deps: Deps, name: str, *, force: bool = False) -> bool:
    """Remove the capture objects from the source database (the table and its rows stay),
    then the registry row. If the source cannot be reached nothing is removed (503): the
    trigger would go on queueing changes nobody reads. `force` removes the registry row
    anyway (for a source database that is gone for good); returns False if the capture
    objects were left behind then."""
    record = await deps.store.sources.get(name)
    if record is None:
        raise NotFound(f"source {name!r} does not exist", field="name")
    source = source_database(deps, record.spec)
    removed = True
    try:
        async with source.connect() as conn:
            await source.uninstall(conn, capture_of(record.spec))
    except SourceUnavailable:
        if not force:
            raise
        removed = False
    await deps.store.sources.unregister(name)
    return removed

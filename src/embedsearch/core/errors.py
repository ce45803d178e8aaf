"""Domain errors. Each knows its HTTP status and error code; api/ maps them to responses once."""

from __future__ import annotations

import asyncio


class EmbedsearchError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(EmbedsearchError):
    status = 422
    code = "invalid_input"


class PayloadTooLarge(EmbedsearchError):
    status = 413
    code = "payload_too_large"


class NotFound(EmbedsearchError):
    status = 404
    code = "not_found"


class ModelMismatch(EmbedsearchError):
    """The stored vectors were made by another model or dimension than the configured one."""

    status = 409
    code = "model_mismatch"


class ProviderUnavailable(EmbedsearchError):
    """The embedding provider failed (network, 5xx, rate limit after retries)."""

    status = 502
    code = "provider_unavailable"


class DatabaseUnavailable(EmbedsearchError):
    status = 503
    code = "database_unavailable"


class SourceUnavailable(DatabaseUnavailable):
    """A source's database (core/sources.py) cannot be reached or failed mid-way."""

    code = "source_unavailable"


class WorkerUnavailable(DatabaseUnavailable):
    """A Citus worker holding shards cannot be reached. The statement failed as a whole: no
    partial results are returned and nothing of a write is stored."""

    code = "worker_unavailable"

    def __init__(self, worker: str, cause: str) -> None:
        super().__init__(
            f"Citus worker {worker} is unavailable ({cause}); the request needs every shard, so "
            "nothing was returned or stored. Retry when the worker is back"
        )
        self.worker = worker


class NotReady(EmbedsearchError):
    status = 503
    code = "not_ready"


class Conflict(EmbedsearchError):
    status = 409
    code = "conflict"


class WriteConflict(Conflict):
    """PostgreSQL aborted a write for a deadlock or a serialization failure (nothing of it was
    stored) and it collided again on every retry."""

    code = "write_conflict"


class StaleDocument(Conflict):
    """A chunk assumed unchanged was rewritten by someone else meanwhile; redo the write
    (callers retry; after that it reaches the client as 409)."""

    def __init__(self, document_id: str) -> None:
        super().__init__(
            f"document {document_id!r} was changed by another writer at the same time; retry",
            field="documentId",
        )


class SchemaTooNew(EmbedsearchError):
    """The database was migrated by a newer release; this code refuses to touch it."""

    status = 503
    code = "schema_too_new"


class MigrationFailed(EmbedsearchError):
    """A schema migration failed; its transaction rolled back and the service must not start."""

    status = 503
    code = "migration_failed"


class Overloaded(EmbedsearchError):
    """Too much work is waiting (e.g. texts queued for the model); retry after `retry_after`
    seconds (the API sends it as Retry-After)."""

    status = 429
    code = "overloaded"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def reraise_cancellation() -> None:
    """In a worker loop that retries errors: psycopg turns a task's cancellation during a query
    into an error (QueryCanceled, or a lost connection); retrying it would swallow the cancel,
    and whoever stops the worker would wait for it forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError

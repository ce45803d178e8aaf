"""Writes that PostgreSQL aborts for a deadlock are run again, and succeed, on the real database.

The deadlock is a real one: another session holds chunk b and then asks for chunk a while our
upsert of [a, b] holds a and waits for b. PostgreSQL aborts our side (its deadlock check comes
first); the retry then waits for the other session and lands."""

from __future__ import annotations

import asyncio
import threading
import time

import psycopg

from embedsearch.core.errors import WriteConflict
from embedsearch.embedders.local import LocalEmbedder
from embedsearch.store import ChunkRows, Store
from tests.servers import handle, open_store, rows

DEADLOCK_TIMEOUT_MS = 300  # our sessions' (set on the test database)


def two_rows(embedder: LocalEmbedder, text: str) -> ChunkRows:
    texts = [f"{text} a", f"{text} b"]
    return ChunkRows(["a", "b"], embedder.embed(texts).vectors, embedder.name, texts, ["h", "h"])


WAITING_FOR_A_LOCK = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
)


def hold_b_then_take_a(database_url: str, holding: threading.Event, outcome: list[str]) -> None:
    """Another writer: locks b, waits until our upsert (holding a) waits for b, then asks for
    a. It detects deadlocks only after 10 s, so PostgreSQL aborts our side, not this one."""
    with psycopg.connect(database_url) as conn:
        conn.execute("SET deadlock_timeout = '10s'")
        conn.execute("SELECT 1 FROM chunk_embeddings WHERE chunk_id = 'b' FOR UPDATE")
        holding.set()
        with psycopg.connect(database_url, autocommit=True) as watcher:
            while watcher.execute(WAITING_FOR_A_LOCK).fetchone() == (0,):
                time.sleep(0.005)
        conn.execute("UPDATE chunk_embeddings SET metadata = '{\"by\": 1}' WHERE chunk_id = 'a'")
        conn.commit()
        outcome.append("committed")


async def upsert_into_deadlock(
    store: Store, database_url: str, embedder: LocalEmbedder, outcome: list[str]
) -> list[bool]:
    chunks = await handle(store)
    await chunks.upsert(two_rows(embedder, "first"))
    second = two_rows(embedder, "second")
    holding = threading.Event()
    other = threading.Thread(target=hold_b_then_take_a, args=(database_url, holding, outcome))
    other.start()
    await asyncio.to_thread(holding.wait)
    try:
        return await chunks.upsert(second)
    finally:
        await asyncio.to_thread(other.join)


def run(
    database_url: str, embedder: LocalEmbedder, *, retries: int
) -> tuple[list[bool] | Exception, list[str]]:
    """Our upsert's outcome, and the other writer's."""
    other: list[str] = []

    async def main() -> list[bool] | Exception:
        async with open_store(
            database_url, model=embedder.name, dimensions=embedder.dimensions
        ) as store:
            store.database._write_retries = retries
            try:
                return await upsert_into_deadlock(store, database_url, embedder, other)
            except WriteConflict as exc:
                return exc

    with psycopg.connect(database_url, autocommit=True) as conn:
        dbname = conn.info.dbname
        conn.execute(f"ALTER DATABASE {dbname} SET deadlock_timeout = {DEADLOCK_TIMEOUT_MS}")
    return asyncio.run(main()), other


def test_a_deadlocked_upsert_is_retried_and_lands(
    database_url: str, local_embedder: LocalEmbedder
) -> None:
    outcome, other = run(database_url, local_embedder, retries=3)
    assert other == ["committed"]  # so PostgreSQL aborted our first attempt: a retry landed
    assert outcome == [False, False]
    stored = dict(rows(database_url, "SELECT chunk_id, content FROM chunk_embeddings"))
    assert stored == {"a": "second a", "b": "second b"}


def test_without_retries_the_deadlock_is_a_409_and_stores_nothing(
    database_url: str, local_embedder: LocalEmbedder
) -> None:
    outcome, other = run(database_url, local_embedder, retries=0)
    assert other == ["committed"]
    assert isinstance(outcome, WriteConflict) and outcome.status == 409
    stored = rows(database_url, "SELECT chunk_id, content, metadata FROM chunk_embeddings")
    assert sorted(stored) == [("a", "first a", {"by": 1}), ("b", "first b", {})]

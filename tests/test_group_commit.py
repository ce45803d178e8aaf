"""Group commit: concurrent single-chunk writes share transactions on the real database, and
each write still gets its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from embedsearch.embedders.local import LocalEmbedder
from embedsearch.store import ChunkRows
from embedsearch.store.group_commit import GroupCommit
from tests.servers import handle, open_store, rows

MODEL = "all-MiniLM-L6-v2"
DEFAULT = "chunk_embeddings"  # the group's key: writes to one table are grouped


def run_with_store(
    database_url: str,
    embedder: LocalEmbedder,
    work: Callable[[GroupCommit[str], list[int]], Awaitable[Any]],
) -> Any:
    """Run `work` with a GroupCommit over the real store; the list records each transaction's
    row count (the default collection's own upsert, counted on the way through)."""

    async def main() -> Any:
        async with open_store(
            database_url, model=embedder.name, dimensions=embedder.dimensions
        ) as store:
            chunks = await handle(store)
            transactions: list[int] = []

            async def counted(target: str, chunk_rows: ChunkRows) -> list[bool]:
                transactions.append(len(chunk_rows))
                return await chunks.upsert(chunk_rows)

            return await work(GroupCommit(counted), transactions)

    return asyncio.run(main())


def one_row(embedder: LocalEmbedder, chunk_id: str, text: str) -> ChunkRows:
    return ChunkRows([chunk_id], embedder.embed([text]).vectors, MODEL, [text], ["h"], [])


def test_concurrent_writes_share_transactions_and_all_land(
    database_url: str, local_embedder: LocalEmbedder
) -> None:
    writes = [one_row(local_embedder, f"c{i}", f"text number {i}") for i in range(32)]

    async def work(group: GroupCommit[str], transactions: list[int]) -> Any:
        created = await asyncio.gather(*(group.upsert(w, DEFAULT) for w in writes))
        again = await group.upsert(writes[0], DEFAULT)
        return created, again, list(transactions)

    created, again, transactions = run_with_store(database_url, local_embedder, work)
    assert created == [[True]] * 32
    assert again == [False]
    assert sum(transactions[:-1]) == 32
    assert len(transactions) - 1 < 32, transactions  # fewer transactions than writes
    stored = dict(rows(database_url, "SELECT chunk_id, content FROM chunk_embeddings"))
    assert stored == {f"c{i}": f"text number {i}" for i in range(32)}


def test_a_rejected_write_fails_alone(database_url: str, local_embedder: LocalEmbedder) -> None:
    writes = [one_row(local_embedder, f"c{i}", f"text {i}") for i in range(10)]

    async def work(group: GroupCommit[str], transactions: list[int]) -> Any:
        await group.upsert(one_row(local_embedder, "seed", "seed"), DEFAULT)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "ALTER TABLE chunk_embeddings ADD CONSTRAINT no_c3 CHECK (chunk_id <> 'c3')"
            )
        outcomes = await asyncio.gather(
            *(group.upsert(w, DEFAULT) for w in writes), return_exceptions=True
        )
        return outcomes, list(transactions)

    outcomes, transactions = run_with_store(database_url, local_embedder, work)
    assert isinstance(outcomes[3], psycopg.errors.CheckViolation)
    assert [o for i, o in enumerate(outcomes) if i != 3] == [[True]] * 9
    # The seed alone, one shared attempt that failed, then every write alone.
    assert transactions[0] == 1 and max(transactions) > 1, transactions
    stored = {r[0] for r in rows(database_url, "SELECT chunk_id FROM chunk_embeddings")}
    assert stored == {"seed"} | {f"c{i}" for i in range(10) if i != 3}


def test_writes_of_one_chunk_keep_their_order(
    database_url: str, local_embedder: LocalEmbedder
) -> None:
    first, other, second = (
        one_row(local_embedder, "same", "first version"),
        one_row(local_embedder, "other", "another chunk"),
        one_row(local_embedder, "same", "second version"),
    )

    async def work(group: GroupCommit[str], transactions: list[int]) -> Any:
        blocker = group.upsert(one_row(local_embedder, "x", "x"), DEFAULT)
        return await asyncio.gather(
            blocker, *(group.upsert(w, DEFAULT) for w in (first, other, second))
        )

    outcomes = run_with_store(database_url, local_embedder, work)
    assert outcomes == [[True], [True], [True], [False]]
    assert rows(database_url, "SELECT content FROM chunk_embeddings WHERE chunk_id = 'same'") == [
        ("second version",)
    ]


def test_a_lone_write_is_written_at_once(database_url: str, local_embedder: LocalEmbedder) -> None:
    async def work(group: GroupCommit[str], transactions: list[int]) -> Any:
        created = await group.upsert(one_row(local_embedder, "alone", "alone"), DEFAULT)
        return created, list(transactions)

    assert run_with_store(database_url, local_embedder, work) == ([True], [1])

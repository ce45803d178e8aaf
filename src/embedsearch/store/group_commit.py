"""Group commit: concurrent small upserts into one table share one transaction.

Each single-chunk /embed is its own request, and alone it pays a pool checkout, a transaction
and a commit for one row. When requests arrive together, those that wait while a write is in
flight go into the next write as one COPY + INSERT ... ON CONFLICT. A lone request is written
at once, so nothing waits on an idle server.

Each request still succeeds or fails on its own: if a shared write fails, every request in it
is written again alone, so one request's error never reaches another. A chunk id already in
the group waits for the next one (one INSERT cannot update a row twice), which also keeps
concurrent writes of one chunk in arrival order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from embedsearch.store.records import ChunkRows, concat_rows

Target = TypeVar("Target", bound=Hashable)  # where rows go; writes to one target are grouped


@dataclass
class _Write:
    rows: ChunkRows
    done: asyncio.Future[list[bool]]


class GroupCommit(Generic[Target]):
    def __init__(
        self,
        upsert: Callable[[Target, ChunkRows], Awaitable[list[bool]]],
        *,
        max_rows: int = 256,
    ) -> None:
        self._upsert = upsert
        self._max_rows = max_rows
        self._queues: dict[Target, list[_Write]] = {}
        self._writers: dict[Target, asyncio.Task[None]] = {}

    async def upsert(self, rows: ChunkRows, target: Target) -> list[bool]:
        write = _Write(rows, asyncio.get_running_loop().create_future())
        self._queues.setdefault(target, []).append(write)
        if target not in self._writers:
            self._writers[target] = asyncio.create_task(self._drain(target))
        # shield: a caller that goes away must not cancel a write others share.
        return await asyncio.shield(write.done)

    async def _drain(self, target: Target) -> None:
        try:
            while queue := self._queues.get(target):
                await self._write(self._take_group(queue), target)
        finally:  # also on cancellation (shutdown): nobody may wait forever
            del self._writers[target]
            for write in self._queues.pop(target, []):
                write.done.set_exception(RuntimeError("the server is shutting down"))

    def _take_group(self, queue: list[_Write]) -> list[_Write]:
        """The oldest writes, up to max_rows (at least one), skipping any that shares a chunk
        id with an earlier write, taken or skipped: each chunk's writes keep their order."""
        group: list[_Write] = []
        claimed: set[str] = set()
        rows = 0
        for write in list(queue):
            ids = set(write.rows.chunk_ids)
            fits = not group or (not ids & claimed and rows + len(write.rows) <= self._max_rows)
            claimed |= ids
            if fits:
                group.append(write)
                queue.remove(write)
                rows += len(write.rows)
        return group

    async def _write(self, group: list[_Write], target: Target) -> None:
        if len(group) > 1:
            merged = concat_rows([w.rows for w in group])
            assert merged is not None
            try:
                flags = await self._upsert(target, merged)
            except Exception:
                pass  # written again one by one below, each with its own outcome
            else:
                start = 0
                for write in group:
                    write.done.set_result(flags[start : start + len(write.rows)])
                    start += len(write.rows)
                return
        for write in group:
            try:
                flags = await self._upsert(target, write.rows)
            except Exception as exc:
                write.done.set_exception(exc)
            else:
                write.done.set_result(flags)

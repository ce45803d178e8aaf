"""One thread runs the model; concurrent requests are gathered into one model call.

Model calls from many request threads at once oversubscribe the CPU (each call already
uses every core), so all embedding goes through this single worker. Requests that queue up
while the model is busy share the next call. Under load (the last call served several
requests) the worker also waits up to `wait_ms` for more, until `batch_size` texts; a lone
request on an idle server runs at once instead of paying that wait.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from embedsearch.embedders.base import Embedder, EmbeddingBatch

log = logging.getLogger(__name__)


@dataclass
class _Job:
    texts: Sequence[str]
    future: Future[EmbeddingBatch] = field(default_factory=Future)


class EmbeddingWorker:
    def __init__(self, embedder: Embedder, *, batch_size: int = 64, wait_ms: float = 2.0) -> None:
        self.embedder = embedder
        self._batch_size = batch_size
        self._wait_s = wait_ms / 1000.0
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._busy = False  # did the last model call serve several requests?
        self._thread = threading.Thread(target=self._run, name="embedding-worker", daemon=True)
        self._thread.start()

    def submit(self, texts: Sequence[str]) -> Future[EmbeddingBatch]:
        job = _Job(list(texts))
        if not self._thread.is_alive():
            raise RuntimeError("embedding worker is closed")
        self._jobs.put(job)
        return job.future

    def embed(self, texts: Sequence[str]) -> EmbeddingBatch:
        return self.submit(texts).result()

    async def embed_async(self, texts: Sequence[str]) -> EmbeddingBatch:
        return await asyncio.wrap_future(self.submit(texts))

    def close(self) -> None:
        """Stop the worker thread (the embedder is closed by its owner)."""
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """Collect jobs that arrive within the wait window; returns (jobs, stop requested)."""
        jobs, size = [first], len(first.texts)
        deadline = time.monotonic() + (self._wait_s if self._busy else 0.0)
        while size < self._batch_size:
            remaining = deadline - time.monotonic()
            try:
                job = (
                    self._jobs.get(timeout=remaining) if remaining > 0 else self._jobs.get_nowait()
                )
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            size += len(job.texts)
        return jobs, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._jobs.get()
            if first is None:
                return
            jobs, stop = self._gather(first)
            self._busy = len(jobs) > 1
            jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]
            if not jobs:
                continue
            texts = [text for job in jobs for text in job.texts]
            try:
                result = self.embedder.embed(texts)
            except BaseException as exc:  # handed to every waiting caller
                for job in jobs:
                    job.future.set_exception(exc)
                continue
            start = 0
            for job in jobs:
                job.future.set_result(result.slice(start, start + len(job.texts)))
                start += len(job.texts)

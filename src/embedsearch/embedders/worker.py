"""One thread runs the model; concurrent requests are gathered into one model call.

Model calls from many request threads at once oversubscribe the CPU (each call already
uses every core), so all embedding goes through this single worker. Requests that queue up
while the model is busy share the next call. Under load (the last call served several
requests) the worker also waits up to `wait_ms` for more, until `batch_size` texts; a lone
request on an idle server runs at once instead of paying that wait.

The queue is bounded by texts waiting (`max_queued_texts`): past it a submit raises
Overloaded (HTTP 429) with a Retry-After estimated from the recent throughput, instead of
piling up work whose callers will have given up. A job is always admitted onto an empty
queue, so one request larger than the bound still runs on an idle worker.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from embedsearch.core.errors import Overloaded
from embedsearch.embedders.base import Embedder, EmbeddingBatch

log = logging.getLogger(__name__)

# Called by the worker thread after each model call: (model name, texts, seconds).
BatchObserver = Callable[[str, int, float], None]
_RATE_SMOOTHING = 0.2  # weight of the newest model call in the throughput estimate
_MAX_RETRY_AFTER_S = 60


@dataclass
class _Job:
    texts: Sequence[str]
    future: Future[EmbeddingBatch] = field(default_factory=Future)


class EmbeddingWorker:
    def __init__(
        self,
        embedder: Embedder,
        *,
        batch_size: int = 64,
        wait_ms: float = 2.0,
        max_queued_texts: int | None = None,
        observers: Sequence[BatchObserver] = (),
    ) -> None:
        """`max_queued_texts`: None for an unbounded queue. `observers`: read at every model
        call, so a list the owner appends to later also reaches this worker."""
        self.embedder = embedder
        self._batch_size = batch_size
        self._wait_s = wait_ms / 1000.0
        self._max_queued = max_queued_texts
        self._observers = observers
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._queued = 0  # texts submitted and not yet taken by the worker thread
        self._queued_lock = threading.Lock()  # submits come from several threads
        self._rate: float | None = None  # texts per second of recent model calls
        self._busy = False  # did the last model call serve several requests?
        self._thread = threading.Thread(target=self._run, name="embedding-worker", daemon=True)
        self._thread.start()

    @property
    def queued_texts(self) -> int:
        """Texts waiting for the model (not counting the call running now)."""
        return self._queued

    def submit(self, texts: Sequence[str]) -> Future[EmbeddingBatch]:
        """Queue texts for the model; raises Overloaded when the queue is full."""
        job = _Job(list(texts))
        if not self._thread.is_alive():
            raise RuntimeError("embedding worker is closed")
        self._admit(len(job.texts))
        self._jobs.put(job)
        return job.future

    def _admit(self, size: int) -> None:
        """Count `size` more texts waiting, or raise Overloaded. Only compared with the bound
        when something already waits: a big request on an idle worker must still run."""
        with self._queued_lock:
            queued = self._queued
            bound = self._max_queued
            if bound is not None and queued and queued + size > bound:
                raise Overloaded(
                    f"the model has {queued} texts waiting (at most {bound}); retry later",
                    retry_after=self.retry_after(queued),
                )
            self._queued = queued + size

    def retry_after(self, queued: int) -> int:
        """Whole seconds until `queued` texts are likely through the model (1 to 60)."""
        rate = self._rate
        if not rate:
            return 1
        return min(_MAX_RETRY_AFTER_S, max(1, math.ceil(queued / rate)))

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
            self._taken(job)
            jobs.append(job)
            size += len(job.texts)
        return jobs, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._jobs.get()
            if first is None:
                return
            self._taken(first)
            jobs, stop = self._gather(first)
            self._busy = len(jobs) > 1
            jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]
            if not jobs:
                continue
            texts = [text for job in jobs for text in job.texts]
            started = time.perf_counter()
            try:
                result = self.embedder.embed(texts)
            except BaseException as exc:  # handed to every waiting caller
                for job in jobs:
                    job.future.set_exception(exc)
                continue
            seconds = time.perf_counter() - started
            start = 0
            for job in jobs:
                job.future.set_result(result.slice(start, start + len(job.texts)))
                start += len(job.texts)
            self._measured(len(texts), seconds)  # after the callers have their rows

    def _taken(self, job: _Job) -> None:
        with self._queued_lock:
            self._queued -= len(job.texts)

    def _measured(self, texts: int, seconds: float) -> None:
        """Update the throughput estimate (for Retry-After) and tell the observers."""
        rate = texts / max(seconds, 1e-6)
        previous = self._rate
        self._rate = rate if previous is None else previous + _RATE_SMOOTHING * (rate - previous)
        for observe in self._observers:
            try:
                observe(self.embedder.name, texts, seconds)
            except Exception:  # metrics must never stop the model thread
                log.exception("model batch observer failed")

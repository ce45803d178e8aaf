"""The model worker: concurrent requests share model calls, each gets its own rows back."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from embedsearch.core.errors import Overloaded
from embedsearch.embedders.base import EmbeddingBatch
from embedsearch.embedders.local import LocalEmbedder
from embedsearch.embedders.worker import BatchObserver, EmbeddingWorker


class Recording:
    """Wraps the real model and records the size of every call it gets."""

    def __init__(self, inner: LocalEmbedder, fail: bool = False) -> None:
        self.inner = inner
        self.calls: list[int] = []
        self.fail = fail
        self.name = inner.name
        self.dimensions = inner.dimensions

    def embed(self, texts: Sequence[str]) -> EmbeddingBatch:
        self.calls.append(len(texts))
        if self.fail:
            raise RuntimeError("model exploded")
        return self.inner.embed(texts)

    def close(self) -> None:
        pass


def test_concurrent_requests_are_gathered_and_answered_in_order(
    local_embedder: LocalEmbedder,
) -> None:
    recording = Recording(local_embedder)
    worker = EmbeddingWorker(recording, batch_size=64, wait_ms=50)
    texts = [[f"request {i} text {j}" for j in range(i % 3 + 1)] for i in range(24)]
    try:
        with ThreadPoolExecutor(24) as pool:
            results = list(pool.map(worker.embed, texts))
    finally:
        worker.close()
    assert len(recording.calls) < len(texts)  # shared model calls
    assert sum(recording.calls) == sum(len(t) for t in texts)
    for request, result in zip(texts, results, strict=True):
        np.testing.assert_allclose(result.vectors, local_embedder.embed(request).vectors, atol=1e-5)


def test_a_failed_model_call_reaches_every_waiting_caller(local_embedder: LocalEmbedder) -> None:
    worker = EmbeddingWorker(Recording(local_embedder, fail=True), wait_ms=20)
    try:
        futures = [worker.submit([f"t{i}"]) for i in range(5)]
        for future in futures:
            with pytest.raises(RuntimeError, match="model exploded"):
                future.result(timeout=30)
    finally:
        worker.close()
    with pytest.raises(RuntimeError, match="closed"):
        worker.submit(["late"])


class Held:
    """The real model, held at each call until the test releases it (so the queue fills), or
    slowed down by `seconds` on purpose (so the throughput is known)."""

    def __init__(self, inner: LocalEmbedder, seconds: float = 0.0) -> None:
        self.inner = inner
        self.seconds = seconds
        self.entered = threading.Event()
        self.release = threading.Event()
        self.name = inner.name
        self.dimensions = inner.dimensions

    def embed(self, texts: Sequence[str]) -> EmbeddingBatch:
        self.entered.set()
        if self.seconds:
            time.sleep(self.seconds)
        else:
            self.release.wait(30)
        return self.inner.embed(texts)

    def close(self) -> None:
        pass


def test_a_full_queue_refuses_jobs_but_an_empty_one_takes_any_size(
    local_embedder: LocalEmbedder,
) -> None:
    held = Held(local_embedder)
    worker = EmbeddingWorker(held, batch_size=1, wait_ms=0, max_queued_texts=2)
    try:
        running = worker.submit(["first"])
        assert held.entered.wait(30)
        assert worker.queued_texts == 0  # taken by the model: the queue is empty again
        big = worker.submit(["a", "b", "c"])  # more than the bound, but nothing waits
        assert worker.queued_texts == 3
        with pytest.raises(Overloaded) as refused:
            worker.submit(["late"])
        assert refused.value.status == 429 and refused.value.retry_after >= 1
        assert worker.queued_texts == 3  # the refused job is not counted
        held.release.set()
        assert len(running.result(30)) == 1 and len(big.result(30)) == 3
        assert worker.queued_texts == 0
        assert len(worker.embed(["again", "and again"])) == 2
    finally:
        held.release.set()
        worker.close()


def test_unbounded_by_default(local_embedder: LocalEmbedder) -> None:
    held = Held(local_embedder)
    worker = EmbeddingWorker(held, batch_size=1)
    try:
        futures = [worker.submit([f"t{i}"]) for i in range(50)]
        held.release.set()
        assert all(len(f.result(30)) == 1 for f in futures)
    finally:
        held.release.set()
        worker.close()


def test_retry_after_follows_the_measured_throughput(local_embedder: LocalEmbedder) -> None:
    worker = EmbeddingWorker(Held(local_embedder, seconds=0.25), max_queued_texts=10)
    try:
        assert worker.retry_after(100) == 1  # nothing measured yet
        worker.embed([f"t{i}" for i in range(4)])  # ~4 texts in 0.25 s: ~16 texts/s
        assert 10 <= worker.retry_after(160) <= 20  # 160 texts at <= 16/s: >= 10 s
        assert worker.retry_after(1) == 1  # at least a second
        assert worker.retry_after(10**6) == 60  # and at most a minute
    finally:
        worker.close()


def test_observers_see_every_model_call_even_those_added_later(
    local_embedder: LocalEmbedder,
) -> None:
    observers: list[BatchObserver] = []
    worker = EmbeddingWorker(Recording(local_embedder), observers=observers)
    seen: list[tuple[str, int, float]] = []

    def broken(model: str, texts: int, seconds: float) -> None:
        raise RuntimeError("observer bug")

    observers.append(broken)  # must not stop the model thread
    observers.append(lambda model, texts, seconds: seen.append((model, texts, seconds)))
    try:
        worker.embed(["one", "two"])
        worker.embed(["three"])
    finally:
        worker.close()  # joins the thread: observers run after the results are handed over
    assert [(model, texts) for model, texts, _ in seen] == [
        (local_embedder.name, 2),
        (local_embedder.name, 1),
    ]
    assert all(seconds > 0 for _, _, seconds in seen)

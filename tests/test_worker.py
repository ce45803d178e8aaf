"""The model worker: concurrent requests share model calls, each gets its own rows back."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from embedsearch.embedders.base import EmbeddingBatch
from embedsearch.embedders.local import LocalEmbedder
from embedsearch.embedders.worker import EmbeddingWorker


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

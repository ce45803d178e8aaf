"""One model worker per embedder in use: the server's default, plus those collections name."""

from __future__ import annotations

import asyncio
from contextlib import suppress

from embedsearch.config import Settings
from embedsearch.embedders import Embedder, build_embedder
from embedsearch.embedders.worker import EmbeddingWorker


class EmbedderRegistry:
    def __init__(self, settings: Settings, default: Embedder) -> None:
        self._settings = settings
        self.default_spec = settings.embedder
        self.default = self._worker(default)
        self._workers: dict[tuple[str, int | None], EmbeddingWorker] = {
            (settings.embedder, settings.dimensions): self.default,
            (settings.embedder, default.dimensions): self.default,
        }
        self._owned: list[Embedder] = []
        self._lock = asyncio.Lock()

    def _worker(self, embedder: Embedder) -> EmbeddingWorker:
        return EmbeddingWorker(
            embedder, batch_size=self._settings.batch_size, wait_ms=self._settings.batch_wait_ms
        )

    async def get(self, spec: str | None, dimensions: int | None = None) -> EmbeddingWorker:
        """The worker for an embedder spec ('local:...', 'openai:...'), loading it once."""
        key = (spec or self.default_spec, dimensions)
        if key in self._workers:
            return self._workers[key]
        async with self._lock:
            if key not in self._workers:
                settings = self._settings.model_copy(
                    update={"embedder": key[0], "dimensions": dimensions}
                )
                embedder = await asyncio.to_thread(build_embedder, settings)
                self._owned.append(embedder)
                self._workers[key] = self._worker(embedder)
            return self._workers[key]

    def close(self) -> None:
        for worker in set(self._workers.values()):
            worker.close()
        for embedder in self._owned:
            with suppress(Exception):
                embedder.close()

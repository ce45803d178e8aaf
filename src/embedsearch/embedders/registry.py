"""One model worker per embedder in use, loaded on first use: the configured default, plus
those collections name. `describe` answers "which model, how many dimensions" without
loading a local model, so commands that never embed stay fast."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from dataclasses import dataclass

from embedsearch.config import Settings
from embedsearch.embedders import Embedder, build_embedder, check_local_dimensions
from embedsearch.embedders.model_dir import configured_dimensions, resolve_model_dir
from embedsearch.embedders.worker import BatchObserver, EmbeddingWorker

Key = tuple[str, int | None]  # (embedder spec, requested dimensions)


@dataclass(frozen=True)
class EmbedderInfo:
    name: str  # as stored with each vector
    dimensions: int


class EmbedderRegistry:
    def __init__(self, settings: Settings, shared: Embedder | None = None) -> None:
        """`shared`: an embedder for the default spec that the caller already loaded (and
        owns: it is not closed here)."""
        self._settings = settings
        self.default_spec = settings.embedder
        self._workers: dict[Key, EmbeddingWorker] = {}
        self._owned: list[Embedder] = []
        self._lock = asyncio.Lock()
        # Told of every model call of every worker, those loaded later too (api/metrics.py).
        self.batch_observers: list[BatchObserver] = []
        if shared is not None:
            self._add(self._default_key, shared)

    @property
    def _default_key(self) -> Key:
        return (self.default_spec, self._settings.dimensions)

    @property
    def loaded_default(self) -> EmbeddingWorker | None:
        return self._workers.get(self._default_key)

    async def default(self) -> EmbeddingWorker:
        return await self.get(None, self._settings.dimensions)

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
                self._add(key, embedder)
            return self._workers[key]

    async def describe(self, spec: str | None, dimensions: int | None = None) -> EmbedderInfo:
        """Name and dimensions, from a loaded worker or a local model's config files; other
        embedders are built (an OpenAI client is light; a size it does not know is probed)."""
        key = (spec or self.default_spec, dimensions)
        provider, _, model = key[0].partition(":")
        if key not in self._workers and provider == "local":
            name, model_dir = resolve_model_dir(model)
            size = configured_dimensions(model_dir)
            if size is not None:
                check_local_dimensions(name, size, dimensions)
                return EmbedderInfo(name, size)
        embedder = (await self.get(*key)).embedder
        return EmbedderInfo(embedder.name, embedder.dimensions)

    def workers(self) -> list[EmbeddingWorker]:
        """The loaded workers, each once."""
        return list(dict.fromkeys(self._workers.values()))

    def _add(self, key: Key, embedder: Embedder) -> None:
        worker = EmbeddingWorker(
            embedder,
            batch_size=self._settings.batch_size,
            wait_ms=self._settings.batch_wait_ms,
            max_queued_texts=self._settings.max_queued_texts,
            observers=self.batch_observers,  # the list itself: observers added later count
        )
        self._workers[key] = worker
        if key == self._default_key:  # the same model whether or not its size is named
            self._workers.setdefault((key[0], embedder.dimensions), worker)

    def close(self) -> None:
        for worker in set(self._workers.values()):
            worker.close()
        for embedder in self._owned:
            with suppress(Exception):
                embedder.close()

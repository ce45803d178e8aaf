"""Embedding providers behind one protocol; the choice is made from settings."""

from __future__ import annotations

from embedsearch.config import Settings
from embedsearch.core.errors import InvalidInput
from embedsearch.embedders.base import Embedder, EmbeddingBatch

__all__ = ["Embedder", "EmbeddingBatch", "build_embedder", "check_local_dimensions"]


def build_embedder(settings: Settings) -> Embedder:
    """Create the embedder named by settings.embedder ('local:...' or 'openai:...')."""
    provider, _, model = settings.embedder.partition(":")
    if provider == "openai":
        from embedsearch.embedders.openai import OpenAIEmbedder

        return OpenAIEmbedder(
            model,
            dimensions=settings.dimensions,
            base_url=settings.openai_base_url,
            timeout_s=settings.openai_timeout_s,
            max_retries=settings.openai_max_retries,
        )
    from embedsearch.embedders.local import LocalEmbedder

    local = LocalEmbedder(
        model,
        backend=settings.backend,
        cache_dir=settings.cache_dir,
        threads=settings.threads,
        batch_size=settings.batch_size,
        batch_tokens=settings.batch_tokens,
        light_runtime=settings.light_runtime,
    )
    check_local_dimensions(local.name, local.dimensions, settings.dimensions)
    return local


def check_local_dimensions(name: str, dimensions: int, requested: int | None) -> None:
    """A local model has one size; asking for another is a configuration error."""
    if requested not in (None, dimensions):
        raise InvalidInput(
            f"EMBEDSEARCH_DIMENSIONS={requested} but {name} makes {dimensions}-dimensional vectors",
            field="dimensions",
        )

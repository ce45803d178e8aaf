"""Embedding providers behind one protocol; the choice is made from settings."""

from __future__ import annotations

from embedsearch.config import Settings
from embedsearch.embedders.base import Embedder, EmbeddingBatch
from embedsearch.errors import InvalidInput

__all__ = ["Embedder", "EmbeddingBatch", "build_embedder"]


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
    )
    if settings.dimensions not in (None, local.dimensions):
        raise InvalidInput(
            f"EMBEDSEARCH_DIMENSIONS={settings.dimensions} but {local.name} makes "
            f"{local.dimensions}-dimensional vectors",
            field="dimensions",
        )
    return local

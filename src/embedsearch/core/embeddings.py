"""Embeddings without storage: the rules of the OpenAI-compatible endpoint (which model names
it answers to, shortening to fewer dimensions), usable by the API, the CLI and the library."""

from __future__ import annotations

from dataclasses import dataclass

from embedsearch.core.deps import Deps
from embedsearch.core.errors import InvalidInput, NotFound
from embedsearch.core.validation import check_text
from embedsearch.embedders.base import EmbeddingBatch, normalize_rows

MAX_INPUTS = 2048  # the OpenAI API's own limit per request


@dataclass(frozen=True)
class Embeddings:
    batch: EmbeddingBatch  # vectors already cut to the dimensions asked for
    model: str


def accepts_model(requested: str, served: str) -> bool:
    """'all-MiniLM-L6-v2', 'sentence-transformers/all-MiniLM-L6-v2' and
    'local:all-MiniLM-L6-v2' all name the model served as 'all-MiniLM-L6-v2'."""
    short = requested.rsplit("/", 1)[-1].removeprefix("local:")
    return short == served


async def embed_texts(
    deps: Deps, texts: list[str], *, model: str | None = None, dimensions: int | None = None
) -> Embeddings:
    """Embed with the default model. `model`, if given, must name it; `dimensions` keeps the
    leading ones and renormalizes, as OpenAI's text-embedding-3 models do."""
    worker = await deps.embedders.default()
    served, size = worker.embedder.name, worker.embedder.dimensions
    if model is not None and not accepts_model(model, served):
        raise NotFound(
            f"model {model!r} is not served here; this server serves {served!r}", field="model"
        )
    if not texts:
        raise InvalidInput("input must not be empty", field="input")
    if len(texts) > MAX_INPUTS:
        raise InvalidInput(f"input has {len(texts)} items; at most {MAX_INPUTS}", field="input")
    if dimensions is not None and dimensions > size:
        raise InvalidInput(f"dimensions must be at most {size} for {served}", field="dimensions")
    for index, text in enumerate(texts):
        check_text(text, max_chars=deps.limits.max_text_chars, field=f"input[{index}]")
    batch = await worker.embed_async(texts)
    if dimensions is not None and dimensions < size:
        # (all-MiniLM-L6-v2 was not trained for this, so quality drops with the size.)
        vectors = normalize_rows(batch.vectors[:, :dimensions])
        batch = EmbeddingBatch(vectors, batch.token_counts, batch.truncated)
    return Embeddings(batch, served)

"""Token-aware chunking with semchunk and the collection model's own tokenizer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from embedsearch.core.errors import InvalidInput
from embedsearch.embedders import Embedder

# Without a tokenizer (OpenAI-compatible providers: no offline tokenizer), count ~4 chars/token.
_CHARS_PER_TOKEN = 4
_DEFAULT_REMOTE_MAX_TOKENS = 512


@dataclass(frozen=True)
class ChunkingOptions:
    max_tokens: int | None = None  # None: the model's window
    overlap: int = 0  # tokens shared by neighbouring chunks


def window(embedder: Embedder) -> int:
    """Tokens of text (without special tokens) that fit the model's window."""
    max_tokens = getattr(embedder, "max_tokens", None)
    return max_tokens - 2 if max_tokens else _DEFAULT_REMOTE_MAX_TOKENS


def _token_counter(embedder: Embedder) -> Any:
    tokenizer = getattr(embedder, "tokenizer", None)
    if tokenizer is not None:
        return tokenizer
    return lambda text: max(1, len(text) // _CHARS_PER_TOKEN)


_CHUNKERS: dict[tuple[int, int], tuple[Embedder, Callable[..., Any]]] = {}


def _chunker(embedder: Embedder, size: int) -> Callable[..., Any]:
    """semchunk's chunker for this model and size, built once (it memoizes token counts)."""
    key = (id(embedder), size)
    cached = _CHUNKERS.get(key)
    if cached is None or cached[0] is not embedder:
        from semchunk import chunkerify  # type: ignore[attr-defined]

        cached = (embedder, chunkerify(_token_counter(embedder), size))
        _CHUNKERS[key] = cached
    return cached[1]


def split(text: str, embedder: Embedder, options: ChunkingOptions) -> list[str]:
    """Chunks of at most max_tokens tokens (the model's window by default), split at the most
    meaningful boundaries semchunk finds (paragraphs, sentences, words)."""
    limit = window(embedder)
    size = options.max_tokens or limit
    if not 8 <= size <= limit:
        raise InvalidInput(
            f"chunking.maxTokens must be between 8 and {limit}", field="chunking.maxTokens"
        )
    if not 0 <= options.overlap < size:
        raise InvalidInput(
            "chunking.overlap must be at least 0 and less than maxTokens", field="chunking.overlap"
        )
    chunks = _chunker(embedder, size)(text, overlap=options.overlap or None)
    return [chunk for chunk in chunks if chunk.strip()]

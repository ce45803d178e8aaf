"""The Embedder protocol: what every embedding provider implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class EmbeddingBatch:
    """Unit-length float32 vectors, one row per input text, in input order."""

    vectors: Vectors
    # Tokens each text had before any truncation (None where the provider does not say).
    token_counts: list[int] | None
    # True where the text was longer than the model's window and was cut to fit.
    truncated: list[bool]

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def slice(self, start: int, stop: int) -> EmbeddingBatch:
        counts = self.token_counts[start:stop] if self.token_counts is not None else None
        return EmbeddingBatch(self.vectors[start:stop], counts, self.truncated[start:stop])


@runtime_checkable
class Embedder(Protocol):
    @property
    def name(self) -> str:
        """Model name as reported to clients and stored with each vector."""
        ...

    @property
    def dimensions(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> EmbeddingBatch:
        """Embed texts; blocking. Raises ProviderUnavailable or InvalidInput on failure."""
        ...

    def close(self) -> None: ...


def normalize_rows(vectors: npt.ArrayLike) -> Vectors:
    """Scale rows to unit length (float32), so one cosine index can serve every metric."""
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(array / norms, dtype=np.float32)


def concat(batches: Sequence[EmbeddingBatch]) -> EmbeddingBatch:
    counts: list[int] | None = []
    for batch in batches:
        if batch.token_counts is None or counts is None:
            counts = None
        else:
            counts.extend(batch.token_counts)
    return EmbeddingBatch(
        np.concatenate([b.vectors for b in batches]) if batches else np.zeros((0, 0), np.float32),
        counts,
        [flag for b in batches for flag in b.truncated],
    )

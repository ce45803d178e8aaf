"""Hybrid search's fusion of a dense and a lexical ranking into one.

- rrf: Reciprocal Rank Fusion, sum over the lists of 1 / (k + rank); ranks only.
- convex: alpha * dense + (1 - alpha) * lexical over scores min-max normalized per query
  within each list (a chunk missing from a list gets that list's 0). Dense scores are
  distances, so they are negated first (larger is better in both).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from embedsearch.core.constants import (
    DEFAULT_CONVEX_ALPHA,
    DEFAULT_FUSION,
    DEFAULT_RRF_K,
    MAX_RRF_K,
)
from embedsearch.core.errors import InvalidInput
from embedsearch.store import SearchHit


class FusionMethod(StrEnum):
    RRF = "rrf"
    CONVEX = "convex"


_DEFAULT_METHOD = FusionMethod(DEFAULT_FUSION)


@dataclass(frozen=True)
class Fusion:
    method: FusionMethod = _DEFAULT_METHOD
    k: int = DEFAULT_RRF_K  # rrf
    alpha: float = DEFAULT_CONVEX_ALPHA  # convex: the dense list's weight

    def check(self, field: str = "fusion") -> Fusion:
        if not 1 <= self.k <= MAX_RRF_K:
            raise InvalidInput(f"{field}.k must be between 1 and {MAX_RRF_K}", field=f"{field}.k")
        if not 0.0 <= self.alpha <= 1.0:
            raise InvalidInput(f"{field}.alpha must be between 0 and 1", field=f"{field}.alpha")
        return self

    def as_dict(self) -> dict[str, Any]:
        if self.method is FusionMethod.RRF:
            return {"method": self.method.value, "k": self.k}
        return {"method": self.method.value, "alpha": self.alpha}

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> Fusion:
        """A collection's stored default (written by as_dict)."""
        return cls(
            FusionMethod(stored["method"]),
            k=int(stored.get("k", DEFAULT_RRF_K)),
            alpha=float(stored.get("alpha", DEFAULT_CONVEX_ALPHA)),
        )


def fuse(
    dense: Sequence[SearchHit], lexical: Sequence[SearchHit], fusion: Fusion, *, limit: int
) -> list[SearchHit]:
    """The `limit` best chunks of both lists, scored by `fusion` (larger is better)."""
    if fusion.method is FusionMethod.RRF:
        legs = [_reciprocal_ranks(dense, fusion.k), _reciprocal_ranks(lexical, fusion.k)]
        weights = (1.0, 1.0)
    else:
        negated = [replace(hit, score=-hit.score) for hit in dense]  # distance: smaller is closer
        legs = [_min_max(negated), _min_max(lexical)]
        weights = (fusion.alpha, 1.0 - fusion.alpha)
    hits = {hit.chunk_id: hit for hit in (*lexical, *dense)}
    scores = {
        chunk_id: sum(w * leg.get(chunk_id, 0.0) for w, leg in zip(weights, legs, strict=True))
        for chunk_id in hits
    }
    best = sorted(scores, key=lambda chunk_id: (-scores[chunk_id], chunk_id))[:limit]
    return [replace(hits[chunk_id], score=scores[chunk_id]) for chunk_id in best]


def _reciprocal_ranks(hits: Sequence[SearchHit], k: int) -> dict[str, float]:
    return {hit.chunk_id: 1.0 / (k + rank) for rank, hit in enumerate(hits, 1)}


def _min_max(hits: Sequence[SearchHit]) -> dict[str, float]:
    if not hits:
        return {}
    low, high = min(h.score for h in hits), max(h.score for h in hits)
    span = high - low
    return {h.chunk_id: (h.score - low) / span if span > 0 else 1.0 for h in hits}

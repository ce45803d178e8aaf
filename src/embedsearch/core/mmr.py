"""Maximal Marginal Relevance: re-rank candidates for relevance to the query *and* novelty
against what is already chosen (Carbonell & Goldstein, 1998)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def mmr(
    query: npt.NDArray[np.float32],
    candidates: npt.NDArray[np.float32],
    *,
    limit: int,
    lambda_: float,
) -> list[int]:
    """Indexes of up to `limit` candidates, in MMR order. Vectors are unit length, so dot
    products are cosine similarities. lambda_=1 is plain relevance; lower favours diversity."""
    if len(candidates) == 0:
        return []
    relevance = candidates @ query
    similarity = candidates @ candidates.T
    chosen: list[int] = []
    # Highest similarity of each candidate to anything chosen so far.
    redundancy = np.full(len(candidates), -np.inf)
    available = np.ones(len(candidates), dtype=bool)
    while len(chosen) < min(limit, len(candidates)):
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        scores = lambda_ * relevance - (1 - lambda_) * penalty
        scores[~available] = -np.inf
        best = int(np.argmax(scores))
        chosen.append(best)
        available[best] = False
        redundancy = np.maximum(redundancy, similarity[best])
    return chosen

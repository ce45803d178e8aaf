"""Search modes of POST /search."""

from __future__ import annotations

from enum import StrEnum


class SearchMode(StrEnum):
    DENSE = "dense"  # vector similarity; score is the distance (smaller is closer)
    LEXICAL = "lexical"  # PostgreSQL full-text search; score is ts_rank (larger is better)
    HYBRID = "hybrid"  # Reciprocal Rank Fusion of both; score is the RRF sum (larger is better)

"""How a collection stores its vectors and which ANN index orders them: the choices, their
limits, and the sizing rules (IVFFlat lists, probes, build memory)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from embedsearch.core.constants import (
    DEFAULT_HNSW_EF_CONSTRUCTION,
    DEFAULT_HNSW_M,
    HNSW_EF_CONSTRUCTION_RANGE,
    HNSW_M_RANGE,
    IVFFLAT_LISTS_RANGE,
)
from embedsearch.core.distance import Distance
from embedsearch.core.errors import InvalidInput

MIB = 1024 * 1024


class Storage(StrEnum):
    """`vector` keeps float32; `halfvec` keeps float16: half the table and index size, and
    room for wide models (an index takes up to 4000 half-precision dimensions)."""

    VECTOR = "vector"
    HALFVEC = "halfvec"

    @property
    def bytes_per_dimension(self) -> int:
        return 4 if self is Storage.VECTOR else 2

    @property
    def max_indexed_dimensions(self) -> int:
        # pgvector's HNSW and IVFFlat limits per column type.
        return 2000 if self is Storage.VECTOR else 4000

    def opclass(self, distance: Distance) -> str:
        return f"{self.value}_{_OPCLASS_SUFFIX[distance]}_ops"


_OPCLASS_SUFFIX = {Distance.COSINE: "cosine", Distance.L2: "l2", Distance.INNER_PRODUCT: "ip"}


class IndexType(StrEnum):
    HNSW = "hnsw"
    IVFFLAT = "ivfflat"
    NONE = "none"  # exact scans only: fine for small collections


@dataclass(frozen=True)
class IndexSpec:
    """What to build. HNSW: graph degree `m` and build beam `ef_construction`. IVFFlat:
    `lists` clusters, chosen from the row count when not given."""

    type: IndexType = IndexType.HNSW
    m: int = DEFAULT_HNSW_M
    ef_construction: int = DEFAULT_HNSW_EF_CONSTRUCTION
    lists: int | None = None

    def check(self) -> IndexSpec:
        for value, (low, high), field in (
            (self.m, HNSW_M_RANGE, "m"),
            (self.ef_construction, HNSW_EF_CONSTRUCTION_RANGE, "efConstruction"),
            (self.lists, IVFFLAT_LISTS_RANGE, "lists"),
        ):
            if value is not None and not low <= value <= high:
                raise InvalidInput(f"{field} must be between {low} and {high}", field=field)
        if self.ef_construction < 2 * self.m:
            raise InvalidInput("efConstruction must be at least 2 * m", field="efConstruction")
        return self


def lists_for(rows: int) -> int:
    """pgvector's advice: rows / 1000 up to 1M rows, sqrt(rows) beyond."""
    if rows <= 1_000_000:
        return max(1, rows // 1000)
    return round(math.sqrt(rows))


def probes_for(lists: int) -> int:
    """Default lists scanned per query. pgvector suggests sqrt(lists) to start; we scan twice
    that, since a retrieval layer should favour recall (ANN recall@10 >= 0.98 by default)."""
    return min(lists, max(1, math.ceil(2 * math.sqrt(lists))))


def build_memory_bytes(
    spec: IndexSpec, *, rows: int, dimensions: int, storage: Storage, cap_bytes: int
) -> int:
    """maintenance_work_mem for a build. An HNSW build is fast only while the whole graph fits
    in memory (pgvector slows down sharply once it does not): per row, the vector plus ~2m
    neighbour slots at layer 0 (16 bytes each) plus element overhead, with 25% headroom.
    IVFFlat needs room for its k-means sample and centers."""
    vector_bytes = dimensions * storage.bytes_per_dimension
    if spec.type is IndexType.HNSW:
        per_row = vector_bytes + 2 * spec.m * 16 * 1.1 + 160
        needed = int(rows * per_row * 1.25)
    else:
        lists = spec.lists or lists_for(rows)
        needed = int(min(rows, 50 * lists) * dimensions * 4 * 2 + lists * dimensions * 8)
    return max(64 * MIB, min(needed + 16 * MIB, cap_bytes))

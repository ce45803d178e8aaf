"""Distance metrics: one enum maps a name to its pgvector operator."""

from __future__ import annotations

from enum import StrEnum


class Distance(StrEnum):
    COSINE = "cosine"
    L2 = "l2"
    INNER_PRODUCT = "inner_product"

    @property
    def operator(self) -> str:
        return _OPERATORS[self]


_OPERATORS = {Distance.COSINE: "<=>", Distance.L2: "<->", Distance.INNER_PRODUCT: "<#>"}

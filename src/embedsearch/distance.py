"""Distance metrics: one enum maps a name to its pgvector operator and index operator class."""

from __future__ import annotations

from enum import StrEnum


class Distance(StrEnum):
    COSINE = "cosine"
    L2 = "l2"
    INNER_PRODUCT = "inner_product"

    @property
    def operator(self) -> str:
        return _OPERATORS[self]

    @property
    def opclass(self) -> str:
        return _OPCLASSES[self]


_OPERATORS = {Distance.COSINE: "<=>", Distance.L2: "<->", Distance.INNER_PRODUCT: "<#>"}
_OPCLASSES = {
    Distance.COSINE: "vector_cosine_ops",
    Distance.L2: "vector_l2_ops",
    Distance.INNER_PRODUCT: "vector_ip_ops",
}

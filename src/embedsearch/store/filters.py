"""Metadata filters -> SQL, composed with psycopg.sql and parameters (never string formatting).

    {"lang": "en"}                               equality (also {"lang": {"$eq": "en"}})
    {"tag": {"$in": ["a", "b"]}}, {"$nin": [...]}, {"$ne": v}
    {"year": {"$gte": 2020, "$lt": 2024}}        numeric ranges ($gt, $gte, $lt, $lte)
    {"page": {"$exists": true}}
    {"$and": [f, ...]}, {"$or": [f, ...]}        several keys in one object are ANDed
    {"source.kind": "pdf"}                       dots reach into nested objects

Equality and $in compile to jsonb containment (`metadata @> ...`), which the GIN index on
metadata serves. A filter nests at most max_depth objects/arrays (each $and/$or takes two: its
list and the filters in it); the bound also keeps this recursive compiler off the stack limit.
"""

from __future__ import annotations

import math
import re
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from embedsearch.core.constants import DEFAULT_MAX_JSON_DEPTH
from embedsearch.core.errors import InvalidInput
from embedsearch.core.validation import LONE_SURROGATE, json_path

FIELD_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}(\.[A-Za-z_][A-Za-z0-9_\-]{0,63}){0,7}$")
_RANGES = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_MAX_CONDITIONS = 100
Scalar = str | int | float | bool | None


class _Compiler:
    def __init__(self, max_depth: int) -> None:
        self.params: dict[str, Any] = {}
        self.max_depth = max_depth

    def nest(self, depth: int, where: str) -> int:
        """The depth of a list or object found at `depth` + 1, if it is allowed."""
        if depth + 1 > self.max_depth:
            raise InvalidInput(
                f"{where} is nested deeper than {self.max_depth} levels of objects and arrays",
                field=where,
            )
        return depth + 1

    def param(self, value: Any) -> sql.Placeholder:
        name = f"f{len(self.params)}"
        if len(self.params) >= _MAX_CONDITIONS * 4:
            raise InvalidInput("filter is too large", field="filter")
        self.params[name] = value
        return sql.Placeholder(name)

    def compile(self, node: Any, where: str, depth: int = 0) -> sql.Composable:
        """`depth`: how many objects and arrays hold `node` (0 for the filter itself)."""
        if not isinstance(node, dict) or not node:
            raise InvalidInput(f"{where} must be a non-empty object", field=where)
        depth = self.nest(depth, where)
        parts = [
            self._entry(key, value, json_path(where, key), depth) for key, value in node.items()
        ]
        return parts[0] if len(parts) == 1 else sql.SQL("({})").format(sql.SQL(" AND ").join(parts))

    def _entry(self, key: str, value: Any, where: str, depth: int) -> sql.Composable:
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise InvalidInput(f"{where} must be a non-empty list of filters", field=where)
            depth = self.nest(depth, where)
            joiner = sql.SQL(" AND " if key == "$and" else " OR ")
            parts = [self.compile(item, f"{where}[{i}]", depth) for i, item in enumerate(value)]
            return sql.SQL("({})").format(joiner.join(parts))
        if not isinstance(key, str) or not FIELD_PATTERN.fullmatch(key):
            raise InvalidInput(
                f"{where}: field names are letters, digits, _ and -, dots for nesting",
                field=where,
            )
        path = key.split(".")
        if isinstance(value, dict):
            if not value:
                raise InvalidInput(f"{where} must not be an empty object", field=where)
            depth = self.nest(depth, where)
            parts = [
                self._operator(path, op, arg, json_path(where, op), depth)
                for op, arg in value.items()
            ]
            return (
                parts[0]
                if len(parts) == 1
                else sql.SQL("({})").format(sql.SQL(" AND ").join(parts))
            )
        return self._contains(path, _scalar(value, where))

    def _contains(self, path: list[str], value: Scalar) -> sql.Composable:
        nested: Any = value
        for part in reversed(path):
            nested = {part: nested}
        return sql.SQL("metadata @> {}").format(self.param(Jsonb(nested)))

    def _operator(
        self, path: list[str], op: str, arg: Any, where: str, depth: int
    ) -> sql.Composable:
        if op == "$eq":
            return self._contains(path, _scalar(arg, where))
        if op == "$ne":
            return sql.SQL("NOT ({})").format(self._contains(path, _scalar(arg, where)))
        if op in ("$in", "$nin"):
            if not isinstance(arg, list) or not arg or len(arg) > _MAX_CONDITIONS:
                raise InvalidInput(
                    f"{where} must be a list of 1 to {_MAX_CONDITIONS} values", field=where
                )
            self.nest(depth, where)
            any_of = sql.SQL("({})").format(
                sql.SQL(" OR ").join(self._contains(path, _scalar(v, where)) for v in arg)
            )
            return any_of if op == "$in" else sql.SQL("NOT {}").format(any_of)
        if op in _RANGES:
            if isinstance(arg, bool) or not isinstance(arg, int | float) or not _finite(arg):
                raise InvalidInput(f"{where} must be a finite number", field=where)
            # CASE keeps the cast from ever seeing a non-number (which would be an error).
            return sql.SQL(
                "(CASE WHEN jsonb_typeof(metadata #> {p}) = 'number' "
                "THEN (metadata #>> {p})::numeric END) {op} {v}"
            ).format(p=self.param(path), op=sql.SQL(_RANGES[op]), v=self.param(arg))
        if op == "$exists":
            if not isinstance(arg, bool):
                raise InvalidInput(f"{where} must be true or false", field=where)
            check = sql.SQL("IS NOT NULL" if arg else "IS NULL")
            return sql.SQL("(metadata #> {}) {}").format(self.param(path), check)
        raise InvalidInput(
            f"{where}: unknown operator; use $eq $ne $in $nin $gt $gte $lt $lte $exists",
            field=where,
        )


def _scalar(value: Any, where: str) -> Scalar:
    if value is not None and not isinstance(value, str | int | float | bool):
        raise InvalidInput(f"{where} must be a string, number, boolean or null", field=where)
    if isinstance(value, float) and not _finite(value):
        raise InvalidInput(f"{where} must be a finite number", field=where)
    if isinstance(value, str) and "\x00" in value:
        raise InvalidInput(f"{where} must not contain NUL characters", field=where)
    if isinstance(value, str) and not value.isascii() and LONE_SURROGATE.search(value):
        raise InvalidInput(f"{where} contains a lone UTF-16 surrogate, not text", field=where)
    return value


def _finite(number: int | float) -> bool:
    return isinstance(number, int) or math.isfinite(number)


def compile_filter(
    filter_: dict[str, Any] | None, *, max_depth: int = DEFAULT_MAX_JSON_DEPTH
) -> tuple[sql.Composable, dict[str, Any]]:
    """SQL condition and its named parameters; TRUE for no filter."""
    if filter_ is None:
        return sql.SQL("TRUE"), {}
    compiler = _Compiler(max_depth)
    return compiler.compile(filter_, "filter"), compiler.params

"""Checks on user input shared by the API, CLI and library. Raise InvalidInput naming the field."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from embedsearch.core.constants import (
    COLLECTION_NAME_PATTERN,
    DEFAULT_MAX_JSON_DEPTH,
    DEFAULT_MAX_METADATA_BYTES,
    MAX_CHUNK_ID_CHARS,
    MAX_DOCUMENT_ID_CHARS,
    MAX_LIMIT,
    TEXT_CONFIG_PATTERN,
)
from embedsearch.core.errors import InvalidInput, PayloadTooLarge

# Collection names become part of table names. fullmatch: `$` would let a trailing newline in.
COLLECTION_NAME = re.compile(COLLECTION_NAME_PATTERN)
TEXT_CONFIG = re.compile(TEXT_CONFIG_PATTERN)
# What JSON's \u escapes can spell but UTF-8 (so PostgreSQL, tokenizers) cannot hold. A valid
# pair is one character by the time it is a Python str, so any surrogate left is a lone one.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# Metadata as it is measured: compact JSON; built once (json.dumps with options builds one a call).
_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def check_chunk_id(chunk_id: str, field: str = "chunkId") -> str:
    if not chunk_id or not chunk_id.strip():
        raise InvalidInput(f"{field} must not be empty", field=field)
    if len(chunk_id) > MAX_CHUNK_ID_CHARS:
        raise InvalidInput(
            f"{field} is {len(chunk_id)} characters; at most {MAX_CHUNK_ID_CHARS} are allowed",
            field=field,
        )
    if "\x00" in chunk_id:
        raise InvalidInput(f"{field} must not contain NUL characters", field=field)
    return chunk_id


def check_text(text: str, *, max_chars: int, field: str = "text") -> str:
    if not text or not text.strip():
        raise InvalidInput(f"{field} must not be empty", field=field)
    if "\x00" in text:
        raise InvalidInput(f"{field} must not contain NUL characters", field=field)
    if len(text) > max_chars:
        raise PayloadTooLarge(
            f"{field} is {len(text)} characters; at most {max_chars} are allowed", field=field
        )
    return text


def check_metadata(
    metadata: dict[str, Any] | None,
    field: str = "metadata",
    *,
    max_bytes: int = DEFAULT_MAX_METADATA_BYTES,
    max_depth: int = DEFAULT_MAX_JSON_DEPTH,
) -> dict[str, Any]:
    """A JSON object jsonb can store (finite numbers, no NUL, no lone surrogates), at most
    `max_bytes` as compact UTF-8 JSON and `max_depth` objects/arrays deep.

    One C-speed json.dumps answers the common case; the Python walk (json_problem) runs only
    when that fails or cannot rule a problem out, and after the size check bounds its work."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidInput(f"{field} must be a JSON object", field=field)
    try:
        encoded = _COMPACT_JSON.encode(metadata)
        size = len(encoded) if encoded.isascii() else len(encoded.encode("utf-8"))
    except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError: a lone surrogate
        problem = json_problem(metadata, field, max_depth=max_depth)
        raise problem or InvalidInput(f"{field} is not valid JSON", field=field) from None
    if size > max_bytes:
        raise PayloadTooLarge(
            f"{field} is {size} bytes as JSON; at most {max_bytes} are allowed", field=field
        )
    # Depth is at most the number of brackets; json.dumps always escapes NUL as \u0000.
    if encoded.count("{") + encoded.count("[") > max_depth or "\\u0000" in encoded:
        problem = json_problem(metadata, field, max_depth=max_depth)
        if problem is not None:
            raise problem
    return metadata


def check_filter(
    filter_: Any, field: str = "filter", *, max_depth: int = DEFAULT_MAX_JSON_DEPTH
) -> dict[str, Any] | None:
    """A metadata filter's shape as JSON (its operators are the compiler's to check)."""
    if filter_ is None:
        return None
    if not isinstance(filter_, dict):
        raise InvalidInput(f"{field} must be a JSON object", field=field)
    problem = json_problem(filter_, field, max_depth=max_depth)
    if problem is not None:
        raise problem
    return filter_


def json_path(parent: str, key: str | int) -> str:
    """Where a value sits, as error fields name it: items[0].metadata.x; a key that could not
    be shown as is (control characters, lone surrogates) in JSON quotes: metadata["\\ud800"]."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    if key and key.isprintable():
        return f"{parent}.{key}" if parent else key
    return f"{parent}[{json.dumps(key)}]"


def json_problem(value: Any, field: str, *, max_depth: int | None = None) -> InvalidInput | None:
    """The first thing (in document order) in a JSON value that jsonb cannot store, or that
    nests deeper than `max_depth` objects/arrays, named by its path; None if there is none.
    Iterative, so no depth can exhaust the stack."""
    stack: list[tuple[Any, str, int]] = [(value, field, 1)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, str):
            problem = _string_problem(node)
            if problem is not None:
                return InvalidInput(f"{path} {problem}", field=path)
        elif isinstance(node, dict | list):
            if max_depth is not None and depth > max_depth:
                return InvalidInput(
                    f"{path} is nested deeper than {max_depth} levels of objects and arrays",
                    field=path,
                )
            children = []
            for key, item in node.items() if isinstance(node, dict) else enumerate(node):
                where = json_path(path, key)
                problem = _string_problem(key) if isinstance(key, str) else None
                if problem is not None:
                    return InvalidInput(f"{where}: its key {problem}", field=where)
                children.append((item, where, depth + 1))
            stack.extend(reversed(children))  # popped in document order
        elif isinstance(node, float) and not math.isfinite(node):
            return InvalidInput(
                f"{path} must be a finite number (JSON has no NaN or Infinity)", field=path
            )
        elif node is not None and not isinstance(node, int):  # bool is an int
            return InvalidInput(f"{path} is not a JSON value ({type(node).__name__})", field=path)
    return None


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "must not contain NUL characters"
    if not text.isascii() and LONE_SURROGATE.search(text):
        return "contains a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape), not text"
    return None


def check_limit(limit: int, field: str = "limit") -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"{field} must be between 1 and {MAX_LIMIT}", field=field)
    return limit


def check_collection_name(name: str, field: str = "collection") -> str:
    if not isinstance(name, str) or not COLLECTION_NAME.fullmatch(name):
        raise InvalidInput(
            f"{field} must match ^{COLLECTION_NAME.pattern}$ (lowercase letters, digits, _)",
            field=field,
        )
    return name


def parse_embedder_spec(value: str) -> tuple[str, str]:
    """'local:all-MiniLM-L6-v2' -> ('local', 'all-MiniLM-L6-v2'); ValueError if malformed."""
    provider, sep, model = value.partition(":")
    if not sep or provider not in ("local", "openai") or not model.strip():
        raise ValueError(
            "embedder must look like 'local:all-MiniLM-L6-v2' or 'openai:text-embedding-3-small'"
        )
    return provider, model


def check_embedder_spec(spec: str, field: str = "embedder") -> str:
    try:
        parse_embedder_spec(spec)
    except ValueError as exc:
        raise InvalidInput(str(exc), field=field) from None
    return spec


def check_document_id(document_id: str, field: str = "documentId") -> str:
    check_chunk_id(document_id, field=field)
    if len(document_id) > MAX_DOCUMENT_ID_CHARS:
        raise InvalidInput(
            f"{field} is {len(document_id)} characters; at most {MAX_DOCUMENT_ID_CHARS}",
            field=field,
        )
    return document_id


def check_text_config(name: str, field: str = "textConfig") -> str:
    """A PostgreSQL text search configuration name (that it exists, the database says)."""
    if not isinstance(name, str) or not TEXT_CONFIG.fullmatch(name):
        raise InvalidInput(
            f"{field} must be a text search configuration name like 'english' or 'simple'",
            field=field,
        )
    return name

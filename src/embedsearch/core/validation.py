"""Checks on user input shared by the API, CLI and library. Raise InvalidInput naming the field."""

from __future__ import annotations

import re
from typing import Any

from embedsearch.core.constants import (
    COLLECTION_NAME_PATTERN,
    MAX_CHUNK_ID_CHARS,
    MAX_DOCUMENT_ID_CHARS,
    MAX_LIMIT,
    TEXT_CONFIG_PATTERN,
)
from embedsearch.core.errors import InvalidInput, PayloadTooLarge

# Collection names become part of table names. fullmatch: `$` would let a trailing newline in.
COLLECTION_NAME = re.compile(COLLECTION_NAME_PATTERN)
TEXT_CONFIG = re.compile(TEXT_CONFIG_PATTERN)


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


def check_metadata(metadata: dict[str, Any] | None, field: str = "metadata") -> dict[str, Any]:
    """JSON object without NUL characters anywhere (PostgreSQL's jsonb cannot store them)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidInput(f"{field} must be a JSON object", field=field)
    if _has_nul(metadata):
        raise InvalidInput(f"{field} must not contain NUL characters", field=field)
    return metadata


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


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

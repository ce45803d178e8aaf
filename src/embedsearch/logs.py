"""Logging for the service: one setup (`configure_logging`), text or JSON lines, each line
carrying the request id of the request being handled, and secrets masked in every line.

The filters sit on our handler, not on loggers: a logger's filters see only the records logged
at that very logger, a handler's see every record that reaches it (uvicorn's too).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO
from urllib.parse import quote

from pydantic import SecretStr

from embedsearch.config import Settings
from embedsearch.core.errors import InvalidInput
from embedsearch.core.keys import READ_KEYS_VAR, WRITE_KEYS_VAR, AccessConfigError, parse_keys

# The id of the request being handled (api/metrics.py sets it for each request). Each request
# runs in a task of its own, which copies the context, so ids never leak across requests.
REQUEST_ID: ContextVar[str | None] = ContextVar("embedsearch_request_id", default=None)

MASK = "***"
_MIN_SECRET_CHARS = 4  # a shorter literal would mask ordinary words; patterns still catch it


@dataclass(frozen=True)
class _Shape:
    """A secret recognised by its shape. The regular expression runs only on text holding one
    of `hints` (lower case): scanning every access log line with all of them cost ~25 us."""

    hints: tuple[str, ...]
    pattern: re.Pattern[str]
    replacement: str


_SHAPES = (
    # scheme://user:password@host -> scheme://user:***@host
    _Shape(
        ("://",), re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/?#@]*):[^\s@/]*@"), rf"\1:{MASK}@"
    ),
    # Authorization: Bearer <token>, Basic <base64> ("basic" alone is an ordinary word)
    _Shape(("bearer",), re.compile(r"(?i)\b(bearer)(\s+)[^\s\"',;]+"), rf"\1\2{MASK}"),
    _Shape(("basic",), re.compile(r"\b(Basic)(\s+)[A-Za-z0-9+/]{8,}={0,2}"), rf"\1\2{MASK}"),
    # OpenAI-style keys: sk-..., sk-proj-...
    _Shape(("sk-",), re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), f"sk-{MASK}"),
    # key=value, "key": "value" and header forms of the usual names (conninfo password=...)
    _Shape(
        ("api", "token", "passw", "secret"),
        re.compile(
            r"(?i)\b(x-api-key|api[_-]?keys?|access[_-]?token|password|passwd|secret)"
            r"([\"']?\s*[:=]\s*[\"']?)(?!\*\*\*)[^\s\"',;&}]+"
        ),
        rf"\1\2{MASK}",
    ),
)


class Redactor:
    """Masks known secret values (longest first) and secret-shaped text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        known = {s for s in secrets if len(s) >= _MIN_SECRET_CHARS}
        self._known = sorted(known, key=len, reverse=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> Redactor:
        return cls(known_secrets(settings))

    def __call__(self, text: str) -> str:
        for secret in self._known:  # substring tests are cheap; few secrets
            if secret in text:
                text = text.replace(secret, MASK)
        lower = text.lower()
        for shape in _SHAPES:
            if any(hint in lower for hint in shape.hints):
                text = shape.pattern.sub(shape.replacement, text)
        return text


def known_secrets(settings: Settings) -> list[str]:
    """The secret values the settings and environment hold: API keys, the database's and the
    read replicas' passwords, the OpenAI key."""
    found = [
        *_keys(settings.api_keys, WRITE_KEYS_VAR),
        *_keys(settings.read_api_keys, READ_KEYS_VAR),
    ]
    if settings.database_url is not None:
        found += _database_password(settings.database_url.get_secret_value())
    try:
        replicas = settings.replica_urls
    except InvalidInput:  # the store refuses to open with it, saying why
        replicas = []
    for url in replicas:
        found += _database_password(url)
    if openai_key := os.environ.get("OPENAI_API_KEY"):
        found.append(openai_key)
    return found


def url_redactor(url: str) -> Redactor:
    """Masks a database URL's password (as given and URL-encoded) and secret shapes: for
    messages about a database other than the service's own, e.g. a source's."""
    return Redactor(_database_password(url))


def _keys(value: SecretStr | None, variable: str) -> list[str]:
    try:
        return parse_keys(value, variable)
    except AccessConfigError:  # the server refuses to start with it, saying why
        return []


def _database_password(url: str) -> list[str]:
    from psycopg.conninfo import conninfo_to_dict

    try:
        password = conninfo_to_dict(url).get("password")
    except Exception:  # a malformed URL fails at connect, with its own message
        return []
    if not password:
        return []
    return [str(password), quote(str(password), safe="")]  # as given and as a URL holds it


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (None outside requests) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class RedactingFilter(logging.Filter):
    """Masks secrets in the formatted message, the exception text and the stack."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # bad arguments: the handler reports it when it formats
            return True
        record.msg, record.args = self._redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self._redact(record.stack_info)
        return True


class TextFormatter(logging.Formatter):
    """`LEVEL logger [request id]: message`, for people."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s%(request_tag)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        record.request_tag = f" [{request_id}]" if request_id else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request_id, exc_info."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if request_id := getattr(record, "request_id", None):
            entry["request_id"] = request_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


class _Handler(logging.StreamHandler[IO[str]]):
    """Ours, so a second configure_logging replaces it instead of doubling every line."""


def configure_logging(
    settings: Settings, *, stream: IO[str] | None = None, level: int = logging.INFO
) -> logging.Handler:
    """Send every log record (uvicorn's included: run it with log_config=None) through one
    handler on the root logger, formatted as settings.log_format says, secrets masked."""
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactingFilter(Redactor.from_settings(settings)))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # warnings too, as lines of the same format
    return handler

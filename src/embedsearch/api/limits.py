"""Request bodies: their size, bounded while they are read, and how they are read as JSON.

BodySizeLimit is pure ASGI (BaseHTTPMiddleware costs a task and a stream per request on a
~5 ms hot path): it answers 413 from Content-Length before reading anything, and counts the
bytes of a body without one (chunked) as they arrive.

JsonRoute reads bodies as strict JSON, before FastAPI and pydantic see them: UTF-8 only; NaN,
Infinity and numbers beyond float range refused (Python's json accepts them, jsonb does not);
strings holding lone surrogates (which JSON's \\u escapes can spell but UTF-8 cannot hold)
refused, naming where they are. Its errors are ApiErrors, the one kind FastAPI lets through
from body reading unchanged.
"""

from __future__ import annotations

import codecs
import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embedsearch.api.errors import ApiError, error_response
from embedsearch.core.validation import json_problem

BODY = "body"


def body_too_large(max_bytes: int) -> ApiError:
    return ApiError(
        413,
        "payload_too_large",
        f"request body is larger than the limit of {max_bytes} bytes",
        BODY,
        headers={"Connection": "close"},  # the rest of the body is not worth reading
    )


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _send_too_large(scope, receive, send, self.max_bytes)
            return
        # Counted even with a Content-Length: that the server stops there is its promise, not
        # ASGI's. Costs one call per chunk.
        await self.app(scope, _counting(receive, self.max_bytes), send)


def _counting(receive: Receive, max_bytes: int) -> Receive:
    received = 0

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise body_too_large(max_bytes)  # FastAPI's body reading re-raises it as is
        return message

    return counted


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server rejects such a request itself
    return None


async def _send_too_large(scope: Scope, receive: Receive, send: Send, max_bytes: int) -> None:
    error = body_too_large(max_bytes)
    response = error_response(error.status_code, error.code, error.message, error.field)
    response.headers.update(error.headers or {})
    await response(scope, receive, send)


class _NotFinite(ValueError):
    pass


def _constant(name: str) -> float:
    raise _NotFinite(f"{name} is not a JSON number; numbers must be finite")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(f"number {text[:40]} is beyond the range of a double; not finite")
    return value


# parse_float costs a call per float in the body; a body has few (the API takes no vectors).
_DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_finite_float)


def invalid_json(message: str) -> ApiError:
    return ApiError(400, "invalid_json", message, BODY)


def parse_json_body(raw: bytes) -> Any:
    """A request body as JSON, or ApiError: 400 invalid_json, 422 for a lone surrogate."""
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        text = raw.decode("utf-8")  # strict: no surrogates smuggled in as bytes
    except UnicodeDecodeError as exc:
        raise invalid_json(f"request body is not UTF-8 (byte {exc.start})") from None
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise invalid_json(
            f"request body is not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise invalid_json("request body is nested too deeply to read") from None
    except _NotFinite as exc:
        raise invalid_json(f"request body is not valid JSON: {exc}") from None
    except ValueError:  # int() refuses more than 4300 digits (sys.get_int_max_str_digits)
        raise invalid_json("request body holds a number with too many digits") from None
    # Only an escape can make a surrogate (the text is valid UTF-8): skip the walk without one.
    if "\\ud" in text or "\\uD" in text:
        problem = json_problem(value, "")
        if problem is not None:
            raise ApiError(422, problem.code, problem.message, problem.field or BODY)
    return value


class JsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json_body(await self.body())
        return self._json


class JsonRoute(APIRoute):
    """An APIRoute whose handler reads JSON bodies with parse_json_body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def read_strict_json(request: Request) -> Response:
            return await handler(JsonRequest(request.scope, request.receive))

        return read_strict_json

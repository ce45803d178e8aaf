"""Every error leaves the API in one shape: {"error": {"code", "message", "field"?}}."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from embedsearch.core.errors import EmbedsearchError

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return JSONResponse({"error": body}, status_code=status)


def _field_path(loc: Sequence[Any]) -> str:
    """('body', 'items', 3, 'text') -> 'items[3].text'."""
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "path") else list(loc)
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part and not str(part).startswith(("function-", "str", "list[")):
            path += f".{part}" if path else str(part)
    return path or "body"


async def _on_domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EmbedsearchError)
    if exc.status >= 500:
        log.warning("%s: %s", exc.code, exc.message)
    return error_response(exc.status, exc.code, exc.message, exc.field)


async def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        return error_response(400, "invalid_json", "request body is not valid JSON", "body")
    field = _field_path(first.get("loc", ()))
    message = f"{field}: {first.get('msg', 'invalid value')}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return error_response(422, "invalid_input", message, field)


async def _on_http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail))


async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return error_response(500, "internal_error", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EmbedsearchError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)

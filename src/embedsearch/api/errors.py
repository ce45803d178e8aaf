"""Every error leaves the API in one shape: {"error": {"code", "message", "field"?}}."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from embedsearch.core.errors import EmbedsearchError

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return JSONResponse({"error": body}, status_code=status)


class ApiError(HTTPException):
    """An error in our shape raised where only HTTPException gets through to the handlers
    (FastAPI turns anything else raised while it reads the body into a bare 400)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status, detail=message, headers=headers)
        self.code = code
        self.message = message
        self.field = field


def _field_path(loc: Sequence[Any]) -> str:
    """('body', 'items', 3, 'text') -> 'items[3].text'."""
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "path") else list(loc)
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part and part != "str" and not str(part).startswith(("function-", "list[")):
            path += f".{part}" if path else str(part)
    return path or "body"


async def _on_domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EmbedsearchError)
    if exc.status >= 500:
        log.warning("%s: %s", exc.code, exc.message)
    response = error_response(exc.status, exc.code, exc.message, exc.field)
    retry_after = getattr(exc, "retry_after", None)  # core.errors.Overloaded
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


async def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "type": ""}
    unreadable = _unreadable_body(first)
    if unreadable is not None:
        return unreadable
    field = _field_path(first.get("loc", ()))
    if first.get("type") == "extra_forbidden":
        message = f"unknown field {field!r}"
    else:
        message = f"{field}: {first.get('msg', 'invalid value')}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return error_response(422, "invalid_input", message, field)


def _unreadable_body(error: Mapping[str, Any]) -> JSONResponse | None:
    """A body that is not a JSON document at all (rather than a document with bad fields)."""
    if error.get("type") == "json_invalid":
        return error_response(400, "invalid_json", "request body is not valid JSON", "body")
    if tuple(error.get("loc", ())) != ("body",):
        return None
    if error.get("type") == "missing":
        return error_response(
            400, "invalid_json", "request body is empty; send a JSON object", "body"
        )
    if isinstance(error.get("input"), bytes):  # FastAPI hands the raw bytes on for non-JSON types
        return error_response(
            415,
            "unsupported_media_type",
            "request body must be JSON, sent with Content-Type: application/json",
            "body",
        )
    return None


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    headers = dict(exc.headers or {})
    if status == 404:
        redirect = _slash_redirect(request)
        if redirect is not None:
            return redirect
    if status == 405:
        # Starlette names the methods of the first route on the path only; a path can have more.
        headers["Allow"] = _allowed_methods(request)
    if isinstance(exc, ApiError):
        response = error_response(status, exc.code, exc.message, exc.field)
    else:
        response = error_response(status, _HTTP_CODES.get(status, "http_error"), str(exc.detail))
    response.headers.update(headers)
    return response


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _routes_matching(request: Request, scope: Scope, at_least: Match = Match.PARTIAL) -> bool:
    """Whether a route matches `scope`: its path (PARTIAL), or path and method (FULL)."""
    routes: list[BaseRoute] = request.app.router.routes
    return any(route.matches(scope)[0].value >= at_least.value for route in routes)


def _allowed_methods(request: Request) -> str:
    # Asked method by method: FastAPI keeps included routers' routes behind wrappers.
    probes = ({**request.scope, "method": method} for method in _METHODS)
    allowed = [p["method"] for p in probes if _routes_matching(request, p, Match.FULL)]
    return ", ".join(allowed)


def _slash_redirect(request: Request) -> Response | None:
    """Starlette's redirect_slashes (turned off in create_app) with a relative Location: its
    own builds an absolute URL from the Host header, which a client controls."""
    path = request.scope["path"]
    if path == "/":
        return None
    other = path.rstrip("/") if path.endswith("/") else path + "/"
    if (
        not other.startswith("/")
        or other.startswith("//")
        or not _routes_matching(request, {**request.scope, "path": other})
    ):
        return None  # "//host" would be a protocol-relative URL: another site
    location = quote(other)  # also keeps CR/LF (a decoded %0d%0a) out of the header
    query = request.scope.get("query_string", b"")
    if query:
        location += "?" + query.decode("latin-1")
    return Response(status_code=307, headers={"Location": location})


async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return error_response(500, "internal_error", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EmbedsearchError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)

"""Who may call the API: API keys (write or read-only), protected mode when no key is set, CORS.

Deny by default, so an endpoint added later is protected without a line here: every path needs
a key except PUBLIC_PATHS, and every request is a write except GET/HEAD/OPTIONS and the POSTs
in READ_ONLY_POSTS. A pure ASGI middleware (not BaseHTTPMiddleware, which costs a task and a
stream per request on a ~5 ms hot path); keys are parsed once, when the app is built.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from embedsearch.api.errors import error_response
from embedsearch.config import Settings
from embedsearch.core.keys import READ_KEYS_VAR, WRITE_KEYS_VAR, AccessConfigError, parse_keys

log = logging.getLogger(__name__)

ALLOW_VAR = "EMBEDSEARCH_ALLOW_UNAUTHENTICATED"
CORS_VAR = "EMBEDSEARCH_CORS_ORIGINS"

# Open to everyone in every mode: probes carry no key and reveal nothing.
# "/" and /ui/... are the search page's static files (routes/ui.py): they hold no data, and the
# page must load before it can ask for a key.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/"})
PUBLIC_READ_PREFIXES = ("/ui/",)  # public to GET/HEAD only
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# POSTs that compute and store nothing, so a read key may call them. The one list of them.
READ_ONLY_POSTS = frozenset({"/search", "/search/pgvector", "/v1/embeddings"})

CORS_ALLOW_HEADERS = ("Authorization", "X-API-Key", "Content-Type", "X-Embedsearch-Min-Lsn")
CORS_EXPOSE_HEADERS = ("WWW-Authenticate", "Retry-After", "X-Request-Id", "X-Embedsearch-Lsn")


class Access(IntEnum):
    """What a request needs and what a key grants; each level includes those below it."""

    NONE = 0
    READ = 1
    WRITE = 2


def required_access(method: str, path: str) -> Access:
    """Classify a request by method and route path (deny by default)."""
    if path in PUBLIC_PATHS:
        return Access.NONE
    if method in ("GET", "HEAD") and path.startswith(PUBLIC_READ_PREFIXES):
        return Access.NONE
    if method in READ_METHODS or (method == "POST" and path in READ_ONLY_POSTS):
        return Access.READ
    return Access.WRITE


def access_needed(scope: Scope) -> Access:
    """What a request needs, by its method and the path the router matches."""
    return required_access(scope.get("method", "GET"), _route_path(scope))


@lru_cache(maxsize=4096)
def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1, and IPv4 loopback seen through a dual-stack socket (::ffff:127.x)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # not an address at all (e.g. starlette TestClient's "testclient")
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def is_local_client(client: tuple[str, int] | None) -> bool:
    # No peer address means a Unix socket: only processes on this machine can reach it.
    return client is None or is_loopback(client[0])


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The key from `Authorization: Bearer <key>`, else from `X-API-Key: <key>`."""
    bearer: bytes | None = None
    api_key: bytes | None = None
    for name, value in headers:
        if name == b"authorization" and bearer is None:
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer":
                bearer = token.strip()
        elif name == b"x-api-key" and api_key is None:
            api_key = value.strip()
    return bearer or api_key or None


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


@dataclass(frozen=True)
class AccessPolicy:
    """Keys as sha256 digests (the keys themselves are not kept) and the access each grants."""

    digests: tuple[tuple[bytes, Access], ...]
    allow_unauthenticated: bool
    cors_origins: tuple[str, ...]

    @property
    def write_keys(self) -> int:
        return sum(1 for _, access in self.digests if access is Access.WRITE)

    @property
    def read_keys(self) -> int:
        return sum(1 for _, access in self.digests if access is Access.READ)

    @property
    def enforced(self) -> bool:
        """False only when every client may do everything: no middleware is needed."""
        return bool(self.digests) or not self.allow_unauthenticated

    def grant(self, key: bytes | None) -> Access:
        """What a presented key grants. Compared in constant time against every known digest,
        without stopping at a match, so timing says nothing about the keys."""
        if not key:
            return Access.NONE
        digest = _digest(key)
        granted = Access.NONE
        for known, access in self.digests:  # digests are unique: at most one matches
            if hmac.compare_digest(digest, known):
                granted = access
        return granted

    def refusal(self, scope: Scope) -> JSONResponse | None:
        """The error to answer with, or None to let the request through."""
        needed = access_needed(scope)
        if needed is Access.NONE:
            return None
        if not self.digests:
            if self.allow_unauthenticated or is_local_client(scope.get("client")):
                return None
            return _protected_mode_error()
        key = presented_key(scope["headers"])
        granted = self.grant(key)
        if granted is Access.NONE:
            return _unauthorized("unknown API key" if key else "missing API key")
        if granted < needed:
            return error_response(
                403,
                "forbidden",
                f"this API key may only read; writes need a key from {WRITE_KEYS_VAR}",
            )
        return None


def _route_path(scope: Scope) -> str:
    """The path the router matches: without the root path a proxy mounts us under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :] or "/"
    return path


def _unauthorized(reason: str) -> JSONResponse:
    response = error_response(
        401,
        "unauthorized",
        f"{reason}: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
    )
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _protected_mode_error() -> JSONResponse:
    return error_response(
        403,
        "protected_mode",
        "no API keys are set, so only clients on this machine are served: set"
        f" {WRITE_KEYS_VAR} (and {READ_KEYS_VAR}) on the server and send"
        f" 'Authorization: Bearer <key>', or set {ALLOW_VAR}=1 to serve every client without one",
    )


class AccessMiddleware:
    """Refuses a request before the app sees it (and before its body is read)."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self.policy.refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":  # closing before accept answers 403
            await send({"type": "websocket.close", "code": 1008})
        else:
            await refusal(scope, receive, send)


def parse_origins(value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    origins = tuple(part.strip() for part in value.split(",") if part.strip())
    if not origins:
        raise AccessConfigError(f"{CORS_VAR} is set but lists no origin")
    for origin in origins:
        # Browsers send "scheme://host[:port]" exactly; a path or trailing slash never matches.
        scheme, sep, host = origin.partition("://")
        if origin != "*" and not (sep and scheme and host and "/" not in host):
            raise AccessConfigError(
                f"{CORS_VAR}: {origin!r} is not an origin like https://app.example.com"
            )
    return origins


def build_policy(settings: Settings) -> AccessPolicy:
    write = parse_keys(settings.api_keys, WRITE_KEYS_VAR)
    read = parse_keys(settings.read_api_keys, READ_KEYS_VAR)
    if set(write) & set(read):
        raise AccessConfigError(f"a key is in both {WRITE_KEYS_VAR} and {READ_KEYS_VAR}")
    digests = {_digest(key.encode()): Access.WRITE for key in write}
    digests |= {_digest(key.encode()): Access.READ for key in read}
    return AccessPolicy(
        digests=tuple(digests.items()),
        allow_unauthenticated=settings.allow_unauthenticated,
        cors_origins=parse_origins(settings.cors_origins),
    )


def log_mode(policy: AccessPolicy) -> None:
    """One line at start saying who may call (key counts only, never the keys)."""
    if policy.digests:
        log.info("API keys: %d write, %d read", policy.write_keys, policy.read_keys)
        if policy.allow_unauthenticated:
            log.info("%s is ignored: API keys are set", ALLOW_VAR)
    elif policy.allow_unauthenticated:
        log.warning(
            "no API keys and %s=1: every client that reaches the port may read and write",
            ALLOW_VAR,
        )
    else:
        log.warning(
            "protected mode: no API keys set (%s, %s), so only loopback clients are served and"
            " others get 403; set keys, or %s=1 to serve every client without a key",
            WRITE_KEYS_VAR,
            READ_KEYS_VAR,
            ALLOW_VAR,
        )
    if policy.cors_origins:
        log.info("CORS: %s", ", ".join(policy.cors_origins))


def install_access_control(app: FastAPI, settings: Settings) -> AccessPolicy:
    """Add the key check and CORS. Call last in create_app: CORS then wraps everything, so
    preflights need no key and every response, errors included, carries its headers."""
    policy = build_policy(settings)
    log_mode(policy)
    if policy.enforced:
        app.add_middleware(AccessMiddleware, policy=policy)
    if policy.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=policy.cors_origins,
            allow_methods=["*"],
            allow_headers=CORS_ALLOW_HEADERS,
            expose_headers=CORS_EXPOSE_HEADERS,
        )
    return policy

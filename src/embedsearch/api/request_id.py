"""The request id: the client's `X-Request-Id` when it is a sane token, else one we make.

It goes back in every response (api/metrics.py's middleware adds the header) and into every
log line written while the request is handled (embedsearch.logs.REQUEST_ID)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

HEADER = b"x-request-id"  # ASGI header names are lower case
# What a client may choose: short, and nothing that could forge a log line or a header.
_SANE = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The id for a request with these (ASGI) headers."""
    for name, value in headers:
        if name == HEADER:
            if _SANE.fullmatch(value):
                return value.decode("ascii")
            break
    return new_request_id()


def new_request_id() -> str:
    """A random (version 4) UUID as 32 hex digits. Made from the bytes directly: uuid.uuid4()
    costs ~5x more, and this runs on every request."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    return raw.hex()

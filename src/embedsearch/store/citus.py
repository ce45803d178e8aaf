"""What a collection sharded on Citus needs beyond its SQL: the shard key of a chunk, and the
worker a failure came from."""

from __future__ import annotations

import re

import psycopg

SHARD_KEY = "shard_key"  # a sharded chunk table's distribution column

# The same rule as the table's CHECK (sql/ddl.py): the chunk id without a trailing "#<n>", so
# a document's chunks (`documentId#0..n`) share a shard. \Z, not $: $ also matches before a
# final newline.
_CHUNK_SUFFIX = re.compile(r"#[0-9]+\Z")


def shard_key(chunk_id: str) -> str:
    return _CHUNK_SUFFIX.sub("", chunk_id)


# Citus reports a node it cannot reach as "connection to the remote node user@host:port failed
# ...", or, when a transaction's connection to it failed, as "failure on connection marked as
# essential: host:port"; a connection lost mid-statement carries "while executing command on
# host:port".
_UNREACHABLE = (
    re.compile(r"connection to the remote node (?:[^@\s]+@)?(\S+?:\d+) failed"),
    re.compile(r"failure on connection marked as essential: (\S+?:\d+)"),
)
_ON_NODE = re.compile(r"while executing command on (\S+?:\d+)")
_CONNECTION_LOST = ("server closed the connection", "connection not open", "terminating connection")


def unreachable_worker(exc: BaseException) -> str | None:
    """host:port of the Citus worker whose connection failed in `exc`; None for any other error
    (a worker's own error, such as a constraint, stays as it is)."""
    if not isinstance(exc, psycopg.Error):
        return None
    message = str(exc)
    for pattern in _UNREACHABLE:
        found = pattern.search(message)
        if found:
            return found.group(1)
    context = (exc.diag.context or "") if exc.diag else ""
    on_node = _ON_NODE.search(context) or _ON_NODE.search(message)
    if on_node and any(lost in message for lost in _CONNECTION_LOST):
        return on_node.group(1)
    return None

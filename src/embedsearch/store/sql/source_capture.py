"""SQL run in a source database: catalog checks, the change capture objects (queue table,
trigger function, trigger), and the reads of rows and changes.

Identifiers reach here validated (full-match patterns, core/sources.py) and are always quoted
with sql.Identifier. The row filter is the user's SQL: its `%` are doubled so psycopg passes
them on, and every statement carrying it runs with parameters (the extended protocol, which
refuses a second statement) inside a READ ONLY transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import sql

CURRENT_SCHEMA = sql.SQL("SELECT current_schema()")
SERVER_VERSION = sql.SQL("SELECT current_setting('server_version_num')::int")
FIND_TABLE = sql.SQL("""
SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s""")
# name, type category ('S': string types), declared type
TABLE_COLUMNS = sql.SQL("""
SELECT a.attname, t.typcategory, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped""")
# A unique index on exactly this column, without a predicate (a primary key is one).
UNIQUE_COLUMN = sql.SQL("""
SELECT EXISTS (
    SELECT FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid
    WHERE i.indrelid = %s AND a.attname = %s AND i.indisunique AND i.indpred IS NULL
      AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum)""")
PRIVILEGES = sql.SQL(
    "SELECT has_table_privilege(%s::oid, 'SELECT'), has_table_privilege(%s::oid, 'TRIGGER'),"
    " has_schema_privilege(%s, 'CREATE')"
)
# The capture objects of a source that may already exist: a relation, function or trigger.
EXISTING_OBJECTS = sql.SQL("""
SELECT 'table ' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relname = %(queue)s
UNION ALL
SELECT 'function ' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = %(schema)s AND p.proname = %(function)s
UNION ALL
SELECT 'trigger ' || t.tgname FROM pg_trigger t WHERE t.tgrelid = %(table)s AND t.tgname = %(trigger)s
""")
READ_ONLY = sql.SQL("SET TRANSACTION READ ONLY")
# Creating or dropping the trigger locks the table against writes: behind a long transaction
# it would wait, and every writer of the table behind it. Give up instead.
LOCK_TIMEOUT = sql.SQL("SET LOCAL lock_timeout = '5s'")
# The queued changes and the rows they name, read in one snapshot.
SNAPSHOT_READ_ONLY = sql.SQL("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")


@dataclass(frozen=True)
class Capture:
    """The names a source's statements are built from."""

    schema: str
    table: str
    id_column: str
    text_columns: Sequence[str]
    metadata_columns: Sequence[str]
    row_filter: str | None
    queue: str
    function: str
    trigger: str

    @property
    def table_ref(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)

    @property
    def queue_ref(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.queue)

    @property
    def function_ref(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.function)

    def filter(self) -> sql.Composable:
        if self.row_filter is None:
            return sql.SQL("true")
        return sql.SQL("({})").format(sql.SQL(self.row_filter.replace("%", "%%")))


def explain_filter(capture: Capture) -> sql.Composed:
    """Parses and plans the row filter against the table without running it."""
    return sql.SQL("EXPLAIN SELECT 1 FROM {} WHERE {} LIMIT %s").format(
        capture.table_ref, capture.filter()
    )


def count_rows(capture: Capture) -> sql.Composed:
    return sql.SQL("SELECT count(*) FROM {} WHERE {} IS NOT NULL AND {}").format(
        capture.table_ref, sql.Identifier(capture.id_column), capture.filter()
    )


def _document_columns(capture: Capture) -> sql.Composed:
    """The row's text (columns joined by blank lines; NULLs left out) and its metadata as
    jsonb, built by PostgreSQL so every column type comes out as JSON."""
    text = sql.SQL("concat_ws(E'\\n\\n', {})").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in capture.text_columns)
    )
    metadata = sql.SQL("jsonb_build_object({})").format(
        sql.SQL(", ").join(
            sql.SQL("{}, {}").format(sql.Literal(c), sql.Identifier(c))
            for c in capture.metadata_columns
        )
    )
    return sql.SQL("{} AS doc_text, {} AS doc_metadata").format(text, metadata)


def backfill_batch(capture: Capture, *, after: bool) -> sql.Composed:
    """The next rows in id order (keyset pagination): id, text, metadata. Parameters: the
    cursor (if `after`), then the batch size. The cursor is passed as untyped text, so
    PostgreSQL reads it as the id column's type."""
    ident = sql.Identifier(capture.id_column)
    cursor = sql.SQL("AND {} > %s").format(ident) if after else sql.SQL("")
    # ORDER BY qualified: a bare name would sort by the output column, the id as text.
    return sql.SQL(
        "SELECT {id}::text AS embedsearch_row_id, {columns} FROM {table}"
        " WHERE {id} IS NOT NULL {cursor} AND {filter} ORDER BY {table}.{id} LIMIT %s"
    ).format(
        id=ident,
        columns=_document_columns(capture),
        table=capture.table_ref,
        cursor=cursor,
        filter=capture.filter(),
    )


def pending_changes(capture: Capture) -> sql.Composed:
    """Queued changes, oldest first: (seq, row id)."""
    return sql.SQL("SELECT seq, row_id::text FROM {} ORDER BY seq LIMIT %s").format(
        capture.queue_ref
    )


def current_rows(capture: Capture) -> sql.Composed:
    """The current version of the changed rows (parameter: their queue seqs). A row that is
    gone, or that the filter no longer takes, comes back with a NULL text."""
    return sql.SQL(
        "SELECT q.row_id::text, r.doc_text, r.doc_metadata"
        " FROM (SELECT DISTINCT row_id FROM {queue} WHERE seq = ANY(%s)) q"
        " LEFT JOIN LATERAL (SELECT {columns} FROM {table} WHERE {id} = q.row_id AND {filter})"
        " r ON true"
    ).format(
        queue=capture.queue_ref,
        columns=_document_columns(capture),
        table=capture.table_ref,
        id=sql.Identifier(capture.id_column),
        filter=capture.filter(),
    )


def acknowledge(capture: Capture) -> sql.Composed:
    # By exact seq: a lower seq committed later than a higher one must not be dropped unseen.
    return sql.SQL("DELETE FROM {} WHERE seq = ANY(%s)").format(capture.queue_ref)


def queue_status(capture: Capture) -> sql.Composed:
    """(pending changes, age in seconds of the oldest)."""
    return sql.SQL(
        "SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(queued_at)), 0)"
        " FROM {}"
    ).format(capture.queue_ref)


def install(capture: Capture) -> list[sql.Composed]:
    """The queue, the trigger function and the trigger, in this order (one transaction).

    The queue's row_id column takes the id column's own type (CREATE TABLE AS ... WITH NO
    DATA), so the worker's join to the table uses its unique index and no type name is ever
    spelled in SQL. The trigger records the id and kind of change, not the text: the worker
    reads the current row, so many updates of one row cost one embedding. It is ENABLE
    ALWAYS: changes applied by logical replication (session_replication_role = replica) fire
    it too, where an ordinary trigger stays silent."""
    ident = sql.Identifier(capture.id_column)
    watched = [capture.id_column, *capture.text_columns, *capture.metadata_columns]
    # Without a filter only the synced columns matter; a filter may read any column.
    changed = (
        sql.SQL("OLD IS DISTINCT FROM NEW")
        if capture.row_filter is not None
        else sql.SQL(" OR ").join(
            sql.SQL("OLD.{c} IS DISTINCT FROM NEW.{c}").format(c=sql.Identifier(c))
            for c in dict.fromkeys(watched)
        )
    )
    return [
        sql.SQL("CREATE TABLE {} AS SELECT {} AS row_id FROM {} WITH NO DATA").format(
            capture.queue_ref, ident, capture.table_ref
        ),
        sql.SQL(
            "ALTER TABLE {} ADD COLUMN seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            " ADD COLUMN kind TEXT NOT NULL,"
            " ADD COLUMN queued_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()"
        ).format(capture.queue_ref),
        sql.SQL("""
CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $embedsearch$
BEGIN
    -- A row without an id (a unique column may hold NULLs) is never a document.
    IF TG_OP = 'DELETE' THEN
        IF OLD.{id} IS NOT NULL THEN
            INSERT INTO {queue} (row_id, kind) VALUES (OLD.{id}, 'delete');
        END IF;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF NOT ({changed}) THEN
            RETURN NULL;
        END IF;
        IF OLD.{id} IS DISTINCT FROM NEW.{id} AND OLD.{id} IS NOT NULL THEN
            INSERT INTO {queue} (row_id, kind) VALUES (OLD.{id}, 'delete');
        END IF;
    END IF;
    IF NEW.{id} IS NOT NULL THEN
        INSERT INTO {queue} (row_id, kind) VALUES (NEW.{id}, lower(TG_OP));
    END IF;
    RETURN NULL;
END
$embedsearch$""").format(
            function=capture.function_ref, queue=capture.queue_ref, id=ident, changed=changed
        ),
        sql.SQL(
            "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW"
            " EXECUTE FUNCTION {}()"
        ).format(sql.Identifier(capture.trigger), capture.table_ref, capture.function_ref),
        sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(
            capture.table_ref, sql.Identifier(capture.trigger)
        ),
    ]


def uninstall(capture: Capture) -> list[sql.Composed]:
    """What install created, and nothing else (IF EXISTS: a half-removed source finishes)."""
    return [
        sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
            sql.Identifier(capture.trigger), capture.table_ref
        ),
        sql.SQL("DROP FUNCTION IF EXISTS {}()").format(capture.function_ref),
        sql.SQL("DROP TABLE IF EXISTS {}").format(capture.queue_ref),
    ]

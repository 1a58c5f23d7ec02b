"""Database plumbing: statements past the ORM, additive upserts, raw UUIDs, and the errors that mean retry."""

import time
import uuid
from datetime import datetime
from typing import Any

from django.db import InterfaceError, OperationalError, connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

# The database went away (a disconnect, a restart): retried or redelivered, never a notification's
# own failure.
DATABASE_ERRORS = (OperationalError, InterfaceError)


def new_epoch_sql(vendor: str) -> str:
    """SQL for a fresh epoch: 8 random hex digits, drawn by the database for each row."""
    if vendor == "postgresql":
        return "substr(md5(random()::text || clock_timestamp()::text), 1, 8)"
    return "lower(hex(randomblob(4)))"


def database_now() -> datetime:
    """The time by the database's clock where it has one (PostgreSQL), else this process's: what the
    history's entries are stamped with (history/recording.py)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT clock_timestamp()")
            now: datetime = cursor.fetchone()[0]
            return now
    return timezone.now()


def prepared_row(connection: BaseDatabaseWrapper, sql: str, params: list[Any]) -> tuple[Any, ...]:
    """One row of a statement run as ``prepared_rows`` runs it."""
    rows = prepared_rows(connection, sql, params)
    assert rows
    return rows[0]


def prepared_rows(
    connection: BaseDatabaseWrapper, sql: str, params: list[Any], *, uuids_as_text: bool = False
) -> list[tuple[Any, ...]]:
    """The rows of ``sql``: on PostgreSQL sent with psycopg's server-side binding and asked to be
    prepared, elsewhere through Django's cursor. Skips the ORM: for the hot paths only. psycopg
    prepares it only where the connection's OPTIONS turn prepared statements on
    (``prepare_threshold``; Django leaves them off, and psycopg then ignores the request): otherwise
    PostgreSQL plans it at every run, for the values it is given (a plan made once for any value
    can be far worse for a variable with many observers). With
    ``uuids_as_text`` PostgreSQL's UUIDs come back as their canonical text, with no UUID object made
    per value (a page of observers reads a thousand; SQLite's come back as it stores them)."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return [tuple(row) for row in cursor.fetchall()] if cursor.description else []
    import psycopg
    from psycopg.types.string import TextLoader

    connection.ensure_connection()
    started = time.monotonic()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        if uuids_as_text:
            cursor.adapters.register_loader("uuid", TextLoader)
        cursor.execute(sql, params, prepare=True)
        rows = [tuple(row) for row in cursor.fetchall()] if cursor.description else []
    _log(connection, [sql], started)
    return rows


def _log(connection: BaseDatabaseWrapper, statements: list[str], started: float) -> None:
    """Log statements run outside Django's cursor as its own cursor does (DEBUG, CaptureQueriesContext)."""
    if connection.queries_logged:
        elapsed = f"{time.monotonic() - started:.3f}"
        connection.queries_log.extend({"sql": sql, "time": elapsed} for sql in statements)


def prepared_pipeline(
    connection: BaseDatabaseWrapper, statements: list[tuple[str, list[Any]]]
) -> list[list[tuple[Any, ...]]]:
    """The rows of each statement, run one after another as ``prepared_rows`` runs one, but sent
    together (psycopg's pipeline mode, PostgreSQL only): one round trip for all of them, and for the
    ``BEGIN`` of a transaction they open. A statement that fails skips the ones after it."""
    import psycopg

    connection.ensure_connection()
    started = time.monotonic()
    raw = connection.connection
    with connection.wrap_database_errors:
        cursors = [psycopg.Cursor(raw) for _ in statements]
        try:
            with raw.pipeline():
                for cursor, (sql, params) in zip(cursors, statements, strict=True):
                    cursor.execute(sql, params, prepare=True)
            results = [
                [tuple(row) for row in cursor.fetchall()] if cursor.description else [] for cursor in cursors
            ]
        finally:
            for cursor in cursors:
                cursor.close()
    _log(connection, [sql for sql, _ in statements], started)
    return results


def upsert_add(
    table: str,
    keys: tuple[str, ...],
    column: str,
    rows: list[tuple[Any, ...]],
    *extra: str,
    refreshed: tuple[str, ...] = (),
    returning: tuple[str, ...] = (),
    assigned: tuple[str, ...] = (),
) -> tuple[str, list[Any]]:
    """The statement that INSERTs the rows (``keys``, ``column``, then ``extra`` columns), or adds
    their ``column`` value to the existing row with the same keys, also setting the ``refreshed``
    extra columns to the new row's and applying the ``assigned`` SQL assignments; it returns the
    ``returning`` columns of each row."""
    names = [*keys, column, *extra]
    rows = sorted(rows, key=lambda row: tuple(str(value) for value in row[: len(keys)]))  # one lock order
    quote = connection.ops.quote_name
    adapt = connection.ops.adapt_datetimefield_value
    params = [adapt(value) if isinstance(value, datetime) else value for row in rows for value in row]
    placeholders = ", ".join(["(" + ", ".join(["%s"] * len(names)) + ")"] * len(rows))
    updates = [f"{quote(column)} = {quote(table)}.{quote(column)} + excluded.{quote(column)}"]
    updates += [f"{quote(name)} = excluded.{quote(name)}" for name in refreshed]
    updates += assigned
    returned = f" RETURNING {', '.join(map(quote, returning))}" if returning else ""
    return (
        f"INSERT INTO {quote(table)} ({', '.join(map(quote, names))}) VALUES {placeholders} "  # noqa: S608
        f"ON CONFLICT ({', '.join(map(quote, keys))}) DO UPDATE SET {', '.join(updates)}{returned}",
        params,
    )


def counting_rows(
    select: str, params: list[Any], *, name: str, counter_table: str, bucket_table: str
) -> tuple[str, list[Any]]:
    """A PostgreSQL statement returning the rows of ``select`` that also adds how many there are to
    the counter ``name`` and to its minute's bucket, committed asynchronously (see
    ``counters.increment``): a read and its count in one round trip."""
    quote = connection.ops.quote_name
    counter, bucket = quote(counter_table), quote(bucket_table)
    # The rows counted once, the commit mode set by the same scan; the inserts always run (they
    # modify data), so neither needs the main query, which reads the page alone.
    sql = (
        f"WITH page AS ({select}), "  # noqa: S608
        "total AS (SELECT count(*) AS n, set_config('synchronous_commit', 'off', true) FROM page), "
        f"counted AS (INSERT INTO {counter} (name, value, created_at) SELECT %s, n, now() FROM total "
        f"WHERE n > 0 ON CONFLICT (name) DO UPDATE SET value = {counter}.value + excluded.value), "
        f"bucketed AS (INSERT INTO {bucket} (minute, name, value) "
        "SELECT date_trunc('minute', now()), %s, n FROM total WHERE n > 0 "
        f"ON CONFLICT (minute, name) DO UPDATE SET value = {bucket}.value + excluded.value) "
        "SELECT * FROM page"
    )
    return sql, [*params, name, name]


def as_uuid(value: Any) -> uuid.UUID | None:
    """A UUID as read raw (PostgreSQL gives a UUID, SQLite its 32 hex digits) or sent in a message
    (its string); None stays None."""
    return value if value is None or isinstance(value, uuid.UUID) else uuid.UUID(value)


def uuid_text(value: Any) -> str:
    """A UUID's canonical text, from what ``prepared_rows(..., uuids_as_text=True)`` read (PostgreSQL:
    that text already; SQLite: its 32 hex digits) or a UUID."""
    return value if isinstance(value, str) and len(value) == 36 else str(uuid_of(value))


def uuid_of(value: Any) -> uuid.UUID:
    """A UUID that cannot be None (a primary key), as ``as_uuid`` reads it."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)

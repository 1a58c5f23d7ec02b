"""The worker's side of the history: each notification it dispatches kept as one row, a batch in one
statement, which also tells each notification its variable's epoch.

An entry is written (and committed) before its notification is delivered: whatever a stream or a
callback received is in the history by then, so a reader that reads the history after subscribing
misses nothing between the two.
"""

from typing import Any

from django.db import connection
from django.utils import timezone

from .. import conf
from ..db import prepared_rows
from ..models import HistoryEntry, VariableState


def record(notifications: list[dict[str, Any]], globs: dict[str, list[str]]) -> None:
    """Keep the numbered ``notifications`` (each with its ``seq``) and set each one's ``epoch``;
    ``globs`` are the patterns matching each name (their observers count as the name's). With the
    history off, nothing is kept: only the epochs of notifications their callers numbered are read
    (the numbering gave the others theirs)."""
    if not notifications:
        return
    if not conf.history():
        _read_missing_epochs(notifications)
        return
    # One row per (name, seq): the same message twice in a batch (a durable one published by its
    # caller and by a worker) must not make the statement update one row twice.
    rows = {(n["var_id"], n["seq"]): n for n in notifications}
    insert = _insert_arrays if connection.vendor == "postgresql" else _insert
    sql, params = insert(list(rows.values()), globs)
    epochs = dict(prepared_rows(connection, sql, params))
    for notification in notifications:
        notification["epoch"] = epochs.get(notification["var_id"])


# Separates a name from the patterns matching it in one array element (names hold no control character).
_NAMES_SEPARATOR = "\x1f"
_COLUMNS = ("var_id", "seq", "notification_id", "old_value", "new_value", "metadata", "at", "observers")


def _insert_arrays(notifications: list[dict[str, Any]], globs: dict[str, list[str]]) -> tuple[str, list[Any]]:
    """PostgreSQL: the batch as arrays, so that the statement's text is the same for every batch
    (one statement text, whatever the batch holds)."""
    quote = connection.ops.quote_name
    table, states = quote(HistoryEntry._meta.db_table), quote(VariableState._meta.db_table)
    field = HistoryEntry._meta.get_field("new_value")
    updates = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in _COLUMNS[2:])
    sql = (
        f"WITH recorded AS (INSERT INTO {table} ({', '.join(map(quote, _COLUMNS))}) "  # noqa: S608
        "SELECT v.var_id, v.seq, v.notification_id, v.old_value, v.new_value, v.metadata, clock_timestamp(), "
        f"(SELECT COALESCE(SUM(s.observer_count), 0) FROM {states} s "
        "WHERE s.var_id = ANY(string_to_array(v.names, %s))) "
        "FROM unnest(%s::varchar[], %s::bigint[], %s::varchar[], "
        "%s::text[], %s::text[], %s::text[], %s::text[]) "
        "AS v(var_id, seq, notification_id, old_value, new_value, metadata, names) "
        f"ON CONFLICT (var_id, seq) DO UPDATE SET {updates} RETURNING var_id) "
        f"SELECT s.var_id, s.epoch FROM {states} s WHERE s.var_id IN (SELECT var_id FROM recorded)"
    )
    columns: list[list[Any]] = [[] for _ in range(7)]
    for n in notifications:
        values = [n["var_id"], n["seq"], n["notification_id"]]
        values += [field.get_prep_value(n[key]) for key in ("old_value", "new_value", "metadata")]
        values.append(_NAMES_SEPARATOR.join([n["var_id"], *globs.get(n["var_id"], ())]))
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return sql, [_NAMES_SEPARATOR, *columns]


def _insert(notifications: list[dict[str, Any]], globs: dict[str, list[str]]) -> tuple[str, list[Any]]:
    """Other databases (SQLite): one VALUES row per notification, written at this host's time
    (PostgreSQL's statement takes the database's clock)."""
    quote = connection.ops.quote_name
    table, states = quote(HistoryEntry._meta.db_table), quote(VariableState._meta.db_table)
    values, params = [], []
    field = HistoryEntry._meta.get_field("new_value")
    at = connection.ops.adapt_datetimefield_value(timezone.now())
    for n in notifications:
        names = [n["var_id"], *globs.get(n["var_id"], ())]
        count = (
            f"(SELECT COALESCE(SUM(observer_count), 0) FROM {states} "  # noqa: S608
            f"WHERE var_id IN ({', '.join(['%s'] * len(names))}))"
        )
        values.append(f"(%s, %s, %s, %s, %s, %s, %s, {count})")
        params += [n["var_id"], n["seq"], n["notification_id"]]
        params += [field.get_prep_value(n[key]) for key in ("old_value", "new_value", "metadata")]
        params += [at, *names]
    updates = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in _COLUMNS[2:])
    sql = (
        f"INSERT INTO {table} ({', '.join(map(quote, _COLUMNS))}) VALUES {', '.join(values)} "  # noqa: S608
        f"ON CONFLICT (var_id, seq) DO UPDATE SET {updates} "
        f"RETURNING var_id, (SELECT epoch FROM {states} WHERE {states}.var_id = {table}.var_id)"
    )
    return sql, params


def _read_missing_epochs(notifications: list[dict[str, Any]]) -> None:
    missing = {n["var_id"] for n in notifications if n.get("epoch") is None}
    if not missing:
        return
    epochs = dict(VariableState.objects.filter(var_id__in=missing).values_list("var_id", "epoch"))
    for notification in notifications:
        if notification.get("epoch") is None:
            notification["epoch"] = epochs.get(notification["var_id"])

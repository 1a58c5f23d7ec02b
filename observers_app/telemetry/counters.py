"""The hub's global counters: rows shared by every process, added to in batches."""

import collections
import logging
import os
import threading
import time

from django.db import connection
from django.utils import timezone

from ..db import new_epoch_sql, prepared_rows, upsert_add
from ..models import StatBucket, StatCounter, VariableState
from . import catalog

NAMES = tuple(catalog.COUNTERS)
logger = logging.getLogger(__name__)


# Rows per upsert statement of observer counts where no arrays can be sent (SQLite's parameter limit).
UPSERT_ROWS = 5000

# Counters also kept per minute, for the stats chart.
BUCKETED = ("notifications_dispatched", "notifications_sent", "notifications_failed")


def increment(counts: dict[str, int]) -> None:
    """Add to several counters in one statement; callers batch, never one write per callback."""
    counts = {name: n for name, n in counts.items() if n}
    if not counts:
        return
    now = timezone.now()
    statements = [
        upsert_add(
            StatCounter._meta.db_table,
            ("name",),
            "value",
            [(name, n, now) for name, n in counts.items()],
            "created_at",
        )
    ]
    minute = now.replace(second=0, microsecond=0)
    bucketed = [(minute, name, n) for name, n in counts.items() if name in BUCKETED]
    if bucketed:
        statements.append(upsert_add(StatBucket._meta.db_table, ("minute", "name"), "value", bucketed))
    if connection.vendor == "postgresql":
        # One round trip: both upserts as data-modifying WITH queries of one statement. Outside a
        # transaction it commits alone, without waiting for the WAL flush (asynchronous commit, for
        # this statement only): a database crash may lose the last fraction of a second of counts,
        # never consistency, and a worker counting once a page does not wait on the disk. Inside a
        # caller's transaction it must not weaken that transaction's commit.
        ctes = ", ".join(f"w{n} AS ({sql})" for n, (sql, _) in enumerate(statements))
        result = "1" if connection.in_atomic_block else "set_config('synchronous_commit', 'off', true)"
        statements = [(f"WITH {ctes} SELECT {result}", [p for _, params in statements for p in params])]
    for sql, params in statements:
        prepared_rows(connection, sql, params)


# Seconds between the writes of what increment_later was given.
LATER_S = 2.0


class _Later:
    """Counts kept in memory and written by a thread of their own, kept until a write succeeds."""

    def __init__(self) -> None:
        self.pending: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def add(self, counts: dict[str, int]) -> None:
        with self.lock:
            self.pending.update(counts)
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._write_forever, name="observers-counts", daemon=True
                )
                self.thread.start()

    def _write_forever(self) -> None:
        while True:
            time.sleep(LATER_S)
            with self.lock:
                counts, self.pending = dict(self.pending), collections.Counter()
            if not counts:
                continue
            try:
                increment(counts)
            except Exception:  # the database is away: kept for the next write
                logger.warning("event=counts_not_written counts=%s", counts, exc_info=True)
                with self.lock:
                    self.pending.update(counts)
                connection.close()


_later = _Later()


def _reset_after_fork() -> None:
    global _later
    _later = _Later()  # the parent's counts, lock and thread are not the child's


def connect() -> None:
    """Give a forked child counts of its own (called once, from ``AppConfig.ready()``)."""
    os.register_at_fork(after_in_child=_reset_after_fork)


def increment_later(counts: dict[str, int]) -> None:
    """Add to counters soon, from where a database write must not wait (a worker's main process, a
    database away): written every LATER_S by a thread, kept until the write succeeds."""
    _later.add(counts)


def adjust_observer_counts(deltas: dict[str, int]) -> None:
    """Add to the per-variable observer counts behind the admin's variables overview. A name left with
    no observer gets a new epoch: its notifications are no longer dispatched, so no longer kept in its
    history, and no reader may resume across that."""
    deltas = {var_id: n for var_id, n in deltas.items() if n}
    if deltas:
        table = connection.ops.quote_name(VariableState._meta.db_table)
        sql, params = upsert_add(
            VariableState._meta.db_table,
            ("var_id",),
            "observer_count",
            list(deltas.items()),
            assigned=(
                f"epoch = CASE WHEN {table}.observer_count + excluded.observer_count <= 0 "
                f"THEN {new_epoch_sql(connection.vendor)} ELSE {table}.epoch END",
            ),
        )
        prepared_rows(connection, sql, params)


def count_more_observers(added: dict[str, int]) -> dict[str, int]:
    """Add to the variables' observer counts and return their new counts (their rows stay locked
    until commit), taking the rows in name order like every other writer of them, in statements of at
    most UPSERT_ROWS rows: off PostgreSQL (there one statement adds the observers too, see
    observers.adds)."""
    names = sorted(added)
    counts: dict[str, int] = {}
    for start in range(0, len(names), UPSERT_ROWS):
        rows = [(var_id, added[var_id]) for var_id in names[start : start + UPSERT_ROWS]]
        sql, params = upsert_add(
            VariableState._meta.db_table,
            ("var_id",),
            "observer_count",
            rows,
            returning=("var_id", "observer_count"),
        )
        counts.update((var_id, int(count)) for var_id, count in prepared_rows(connection, sql, params))
    return counts


def read() -> tuple[dict[str, int], int]:
    """Every counter (missing ones as 0), and the milliseconds since the first was written."""
    rows = list(StatCounter.objects.values_list("name", "value", "created_at"))
    values = dict.fromkeys(NAMES, 0)
    values.update({name: value for name, value, _ in rows})
    now = timezone.now()
    started = min((created for _, _, created in rows), default=now)
    return values, int((now - started).total_seconds() * 1000)

"""The hub's global counters: rows shared by every process, added to in batches."""

from typing import Any

from django.db import connection
from django.utils import timezone

from .models import StatCounter

NAMES = (
    "observers_added",
    "observers_removed",
    "notifications_sent",
    "notifications_failed",
    "cleanup_runs",
    "empty_dispatches",
    "owners_removed",
    "observers_reenabled",
    "removed_removed",
    "removed_owner_closed",
    "removed_owner_died",
    "removed_swept",
    "removed_quarantined",
)


def increment(counts: dict[str, int]) -> None:
    """Add to several counters in one statement; callers batch, never one write per callback."""
    counts = {name: n for name, n in counts.items() if n}
    if not counts:
        return
    table = connection.ops.quote_name(StatCounter._meta.db_table)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    rows = ", ".join(["(%s, %s, %s)"] * len(counts))
    params: list[Any] = []
    for name, n in counts.items():
        params += [name, n, now]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (name, value, created_at) VALUES {rows} "  # noqa: S608
            f"ON CONFLICT (name) DO UPDATE SET value = {table}.value + excluded.value",
            params,
        )


def read() -> tuple[dict[str, int], int]:
    """Every counter (missing ones as 0), and the milliseconds since the first was written."""
    rows = list(StatCounter.objects.values_list("name", "value", "created_at"))
    values = dict.fromkeys(NAMES, 0)
    values.update({name: value for name, value, _ in rows})
    now = timezone.now()
    started = min((created for _, _, created in rows), default=now)
    return values, int((now - started).total_seconds() * 1000)

"""A variable's ``seq``: the number each of its notifications gets, in one statement per batch."""

from django.db import connection
from django.utils import timezone

from ..db import prepared_rows, upsert_add
from ..models import VariableState


def next_seq(var_id: str) -> int:
    """Advance and return the variable's sequence number in one round trip.

    Inside a transaction the variable's state row stays locked until commit, so numbers taken
    in transactions follow their commit order.
    """
    return advance_seqs({var_id: 1})[var_id]


def advance_seqs(counts: dict[str, int]) -> dict[str, int]:
    """Advance each variable's sequence number by its count in one statement (rows in name order);
    returns each one's new (highest) number."""
    now = timezone.now()
    sql, params = upsert_add(
        VariableState._meta.db_table,
        ("var_id",),
        "seq",
        [(var_id, count, now) for var_id, count in counts.items()],
        "last_notified_at",
        refreshed=("last_notified_at",),
        returning=("var_id", "seq"),
    )
    return {var_id: int(seq) for var_id, seq in prepared_rows(connection, sql, params)}

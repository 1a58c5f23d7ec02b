"""A variable's ``seq``: the number each of its notifications gets, in one statement per batch."""

from django.db import connection
from django.utils import timezone

from .. import conf
from ..db import new_epoch_sql, prepared_rows, upsert_add
from ..models import VariableState


def next_seq(var_id: str) -> int:
    """Advance and return the variable's sequence number in one round trip.

    Inside a transaction the variable's state row stays locked until commit, so numbers taken
    in transactions follow their commit order.
    """
    return advance_seqs({var_id: 1})[var_id][0]


def advance_seqs(counts: dict[str, int]) -> dict[str, tuple[int, str]]:
    """Advance each variable's sequence number by its count in one statement (rows in name order);
    returns each one's new (highest) number and its epoch. With the history off (OBSERVERS_HISTORY),
    the epoch changes with every number: nobody can resume across a notification nobody kept."""
    now = timezone.now()
    assigned = () if conf.history() else (f"epoch = {new_epoch_sql(connection.vendor)}",)
    sql, params = upsert_add(
        VariableState._meta.db_table,
        ("var_id",),
        "seq",
        [(var_id, count, now) for var_id, count in counts.items()],
        "last_notified_at",
        refreshed=("last_notified_at",),
        returning=("var_id", "seq", "epoch"),
        assigned=assigned,
    )
    return {var_id: (int(seq), epoch) for var_id, seq, epoch in prepared_rows(connection, sql, params)}

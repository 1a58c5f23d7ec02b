"""``history()``: what is kept of a variable's notifications, and whether it covers a reader's gap."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import aio, conf
from ..exceptions import InvalidArgument
from ..models import HistoryEntry, VariableState
from ..validation import check_name

# The most entries one call returns; a reader pages on with the last seq it got.
MAX_LIMIT = 10_000


@dataclass(frozen=True)
class Entry:
    """One notification as it was dispatched."""

    seq: int
    notification_id: str
    old_value: Any
    new_value: Any
    metadata: dict[str, Any] | None
    at: datetime
    observers: int


@dataclass(frozen=True)
class History:
    """A variable's kept notifications, oldest first, with its epoch. ``complete`` is False when
    ``after_seq`` was given and notifications after it are no longer kept (pruned, or never kept:
    the history was off), so a reader knows it missed some."""

    var_id: str
    epoch: str
    entries: list[Entry]
    complete: bool


def history(var_id: str, after_seq: int | None = None, limit: int = 100) -> History:
    """The notifications of ``var_id`` kept in its history: the first ``limit`` after ``after_seq``,
    or without it the newest ``limit``; oldest first either way.

    The epoch names the variable's numbering: a reader that saw ``(epoch, seq)`` may resume with
    ``after_seq=seq`` while the epoch is the same; a different epoch means its numbering restarted
    or its history was lost, and the seq means nothing any more.
    """
    check_name(var_id)
    if after_seq is not None and (
        isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0
    ):
        raise InvalidArgument(f"after_seq must be None or an int >= 0, not {after_seq!r:.80}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgument(f"limit must be an int from 1 to {MAX_LIMIT}, not {limit!r:.80}")
    rows = HistoryEntry.objects.filter(var_id=var_id)
    if after_seq is None:
        found = list(reversed(rows.order_by("-seq").values_list(*_ENTRY)[:limit]))
    else:
        found = list(rows.filter(seq__gt=after_seq).order_by("seq").values_list(*_ENTRY)[:limit])
    # Read after the entries: a prune in between makes the answer incomplete, never wrongly complete.
    state = VariableState.objects.filter(var_id=var_id).values_list("epoch", "seq", "history_floor").first()
    epoch, seq, floor = state or ("", 0, 0)
    if not conf.history():
        floor = seq  # nothing is kept: a reader behind the variable's numbering missed some
    complete = after_seq is None or floor <= after_seq <= seq
    return History(var_id=var_id, epoch=epoch, entries=[Entry(*row) for row in found], complete=complete)


ahistory = aio.async_twin(history)

_ENTRY = ("seq", "notification_id", "old_value", "new_value", "metadata", "at", "observers")

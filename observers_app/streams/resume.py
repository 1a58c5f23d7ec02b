"""Resuming a stream: the id each event carries, and what a reconnect with ``Last-Event-ID`` missed.

A stream of one name sends ids ``<epoch>:<seq>``: the variable's numbering and its position in it.
A stream of several names or of a pattern sends ``m <start> <name> <epoch>:<seq> ...``: when it
started (milliseconds, the database's clock), and the position of each variable it sent something
of (names percent-escaped). A reconnect reads from the history what came after those positions,
and, for the variables it has no position of, what was recorded since the start: a variable with
no position sent nothing before the disconnect, so none of that is a duplicate, and every change
recorded since the start either reached the stream (it then has a position) or is read here.
Positions are compared by seq, never across variables: the history's order across worker
processes is not the order of its rows' ids.

When the history cannot cover the gap (an epoch changed, the entries were pruned, the history is
off, too many were missed, or the id is not one of this stream's) the stream says so in a ``reset``
event and starts again from a snapshot.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import reduce
from operator import or_
from typing import Any
from urllib.parse import quote, unquote

from django.db.models import Q

from .. import conf
from ..globs import glob_matches
from ..history.reading import history
from ..models import HistoryEntry, VariableState
from ..telemetry import dashboard
from . import messages, snapshot
from .messages import StreamEvent

# Events one resume sends at most: a client further behind starts again from a snapshot.
RESUME_LIMIT = 10_000
# Variables whose positions one id carries at most: past that the stream's ids say "-" (the stream
# cannot be resumed; a reconnect gets a reset and a snapshot).
MAX_POSITIONS = 50
NOT_RESUMABLE = "-"


@dataclass
class Positions:
    """One stream's position in each variable's numbering, written into each event's id."""

    single: bool
    started: datetime | None
    marks: dict[str, tuple[str, int]] = field(default_factory=dict)

    def advance(self, event: StreamEvent) -> None:
        epoch = event.epoch
        if event.seq is not None and epoch is not None:
            self.marks[event.var_id] = (epoch, event.seq)

    def text(self) -> str:
        if self.single:
            epoch, seq = next(iter(self.marks.values()), ("", 0))
            return f"{epoch}:{seq}"
        if len(self.marks) > MAX_POSITIONS or self.started is None:
            return NOT_RESUMABLE
        millis = int(self.started.timestamp() * 1000)
        return " ".join(
            ["m", str(millis), *(f"{quote(var, safe='')} {e}:{s}" for var, (e, s) in self.marks.items())]
        )


@dataclass
class Opening:
    """How a stream starts: the events it missed (a resume), or a snapshot after a ``reset``."""

    positions: Positions | None
    events: list[StreamEvent]
    resumed: bool = False
    reset: str | None = None


def resumable(var_ids: list[str]) -> bool:
    """The dashboard's readings are not numbered: a stream watching them sends no ids."""
    return dashboard.VARIABLE not in var_ids


def open_stream(var_ids: list[str], last_event_id: str | None, started: datetime) -> Opening:
    """What a stream sends first (database work, on the fan-out's threads): the missed events when
    ``last_event_id`` can be resumed, else the snapshot (after a reset when it could not).
    ``started``: the database's time before the stream subscribed (a change recorded after it either
    reaches the stream or is read on a resume; one recorded just before may be read too, never lost)."""
    reset = None
    if last_event_id is not None and resumable(var_ids):
        cursor = parse(last_event_id, var_ids)
        missed: list[StreamEvent] | str
        if last_event_id == NOT_RESUMABLE:
            missed = (
                f"the stream sent changes of more than {MAX_POSITIONS} variables: its id cannot hold them"
            )
        elif cursor is None:
            missed = "the event id is not one of this stream's"
        else:
            missed = _missed(var_ids, cursor)
        if isinstance(missed, str):
            reset = missed
        else:
            assert cursor is not None
            return Opening(positions=cursor, events=missed, resumed=True)
    values = snapshot.read(var_ids)
    if not resumable(var_ids):
        return Opening(positions=None, events=values, reset=reset)
    return Opening(positions=_positions_of(var_ids, values, started), events=values, reset=reset)


def parse(text: str, var_ids: list[str]) -> Positions | None:
    """The positions an id of this stream holds; None for one it could not have sent."""
    single = _single(var_ids)
    try:
        if single:
            epoch, seq = text.split(":")
            return Positions(single=True, started=None, marks={var_ids[0]: (_epoch(epoch), _seq(seq))})
        tag, millis, *pairs = text.split(" ")
        if tag != "m" or len(pairs) % 2 or len(pairs) > 2 * MAX_POSITIONS:
            return None
        marks = {}
        for name, position in zip(pairs[::2], pairs[1::2], strict=True):
            epoch, seq = position.split(":")
            marks[unquote(name)] = (_epoch(epoch), _seq(seq))
        return Positions(
            single=False, started=datetime.fromtimestamp(int(millis) / 1000, tz=UTC), marks=marks
        )
    except (ValueError, OverflowError, OSError):
        return None


def last_positions(positions: Positions, missed: list[StreamEvent]) -> list[StreamEvent]:
    """Where each variable's live changes continue after a resume: past the last missed one, else
    past the id's position (as snapshot positions, for ``StreamFanout.start_positions``)."""
    last = {var_id: seq for var_id, (_, seq) in positions.marks.items()}
    for event in missed:
        if event.seq is not None:
            last[event.var_id] = max(event.seq, last.get(event.var_id, 0))
    return [
        messages.snapshot(var_id, None, seq=seq, version=None, absent=True) for var_id, seq in last.items()
    ]


def _epoch(text: str) -> str:
    if len(text) > 16 or (not text.isalnum() and text):
        raise ValueError(text)
    return text


def _seq(text: str) -> int:
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


def _single(var_ids: list[str]) -> bool:
    return len(var_ids) == 1 and "*" not in var_ids[0]


def _positions_of(var_ids: list[str], values: list[StreamEvent], started: datetime) -> Positions:
    """A fresh stream's positions: each key's seq at its snapshot (a pattern's: 0), with its epoch,
    and (several keys or a pattern) the time it started. A key whose last observer goes gets a new
    epoch (its changes are no longer kept): a resume after that is refused."""
    epochs = dict(VariableState.objects.filter(var_id__in=var_ids).values_list("var_id", "epoch"))
    seqs = {event.var_id: event.seq or 0 for event in values if event.var_id in var_ids}
    marks = {key: (epochs.get(key, ""), seqs.get(key, 0)) for key in var_ids}
    if _single(var_ids):
        return Positions(single=True, started=None, marks=marks)
    return Positions(single=False, started=started, marks=marks)


def _missed(var_ids: list[str], cursor: Positions) -> list[StreamEvent] | str:
    """The events after the cursor, each variable's in seq order; or why they cannot be sent."""
    if not conf.history():
        return "the hub keeps no history (OBSERVERS_HISTORY is off)"
    if cursor.single:
        return _missed_by_one(var_ids[0], *cursor.marks[var_ids[0]])
    return _missed_by_several(var_ids, cursor)


def _missed_by_one(var_id: str, epoch: str, seq: int) -> list[StreamEvent] | str:
    kept = history(var_id, after_seq=seq, limit=RESUME_LIMIT)
    if kept.epoch != epoch and (epoch, seq) != ("", 0):
        return "the variable's numbering restarted: its history no longer follows the event id"
    if not kept.complete:
        return "the history no longer holds every change since the event id (pruned)"
    if len(kept.entries) == RESUME_LIMIT:
        return f"more than {RESUME_LIMIT - 1} changes were missed"
    return [
        _event(var_id, kept.epoch, e.seq, e.notification_id, e.old_value, e.new_value, e.metadata, e.at)
        for e in kept.entries
    ]


def _missed_by_several(var_ids: list[str], cursor: Positions) -> list[StreamEvent] | str:
    assert cursor.started is not None
    marks = {var: mark for var, mark in cursor.marks.items() if _watched(var_ids, var)}
    states = {
        var: (epoch, seq, floor)
        for var, epoch, seq, floor in VariableState.objects.filter(var_id__in=marks).values_list(
            "var_id", "epoch", "seq", "history_floor"
        )
    }
    for var, (epoch, seq) in marks.items():
        current = states.get(var)
        if (epoch, seq) == ("", 0):
            if current is not None and current[2] > 0:
                return f"the history no longer holds every change of {var!r} (pruned)"
        elif current is None or current[0] != epoch:
            return f"the numbering of {var!r} restarted: its history no longer follows the event id"
        elif not current[2] <= seq <= current[1]:
            return f"the history no longer holds every change of {var!r} since the event id (pruned)"
    unmarked = _matching(var_ids) & ~Q(var_id__in=marks)
    pruned = VariableState.objects.filter(unmarked, history_pruned_at__gte=cursor.started).values_list(
        "var_id"
    )
    if any(_watched(var_ids, var) for (var,) in pruned[:RESUME_LIMIT]):
        return "the history no longer holds every change since the stream started (pruned)"
    after_marks = [Q(var_id=var, seq__gt=seq) for var, (_, seq) in marks.items()]
    rows = HistoryEntry.objects.filter(reduce(or_, after_marks, unmarked & Q(at__gte=cursor.started)))
    read = list(
        rows.order_by("at", "id").values_list(
            "var_id", "seq", "notification_id", "old_value", "new_value", "metadata", "at"
        )[:RESUME_LIMIT]
    )
    # Counted before the patterns' filter: rows past the limit may be the stream's.
    if len(read) == RESUME_LIMIT:
        return f"more than {RESUME_LIMIT - 1} changes were missed"
    found = [row for row in read if _watched(var_ids, row[0])]
    epochs = dict(
        VariableState.objects.filter(var_id__in={row[0] for row in found}).values_list("var_id", "epoch")
    )
    return [_event(var, epochs.get(var, ""), *rest) for var, *rest in _in_seq_order(found)]


def _in_seq_order(rows: list[Any]) -> list[Any]:
    """``rows`` in time order across variables, each variable's in seq order (two workers may record
    a variable's notifications out of their order)."""
    by_var: dict[str, list[Any]] = {}
    for row in rows:
        by_var.setdefault(row[0], []).append(row)
    ordered = {var: iter(sorted(group, key=lambda row: row[1])) for var, group in by_var.items()}
    return [next(ordered[row[0]]) for row in rows]


def _matching(var_ids: list[str]) -> Q:
    """The rows whose name a key could match (a pattern by its literal prefix; checked in Python)."""
    names = [v for v in var_ids if "*" not in v]
    prefixes = [Q(var_id__startswith=v.split("*", 1)[0]) for v in var_ids if "*" in v]
    return reduce(or_, prefixes, Q(var_id__in=names))


def _watched(var_ids: list[str], var: str) -> bool:
    return any(glob_matches(key, var) if "*" in key else key == var for key in var_ids)


def _event(
    var_id: str,
    epoch: str,
    seq: int,
    notification_id: str,
    old_value: Any,
    new_value: Any,
    metadata: dict[str, Any] | None,
    at: datetime,
) -> StreamEvent:
    """A missed notification as the stream would have sent it live (``notified_at``: when it was
    recorded)."""
    hub = {"notification_id": notification_id, "seq": seq, "epoch": epoch, "notified_at": at.timestamp()}
    return StreamEvent(
        var_id=var_id,
        seq=seq,
        notification_id=notification_id,
        data={
            "var_id": var_id,
            "old_value": old_value,
            "new_value": new_value,
            "metadata": {**(metadata or {}), **hub},
        },
    )

"""One open stream's state: what it watches, its bounded buffer, what its snapshot already covered."""

import asyncio
import collections
import itertools
from collections.abc import Callable, Iterable
from typing import Any

from ..validation import value_json
from . import messages
from .messages import StreamEvent
from .resume import Positions

# Notification ids a stream remembers to drop a second copy (a name and a glob both matching).
_RECENT_IDS = 256
# Changes a stream holds while its snapshot is read, in buffers: past that it closes.
_OPENING_FACTOR = 10
TOO_BUSY_TO_OPEN = "more changes arrived while the stream opened than it may hold; reconnect"
SLOW_CLIENT = "slow client: more changes waiting than the stream's buffer holds; reconnect to resume"
OWNER_SWEPT = "the server was cut off from the database and lost its watch of this stream; reconnect"
WRITE_TIMED_OUT = "slow client: it read nothing for OBSERVERS_STREAM_WRITE_TIMEOUT seconds"


class Watcher:
    """Buffers up to ``buffer_size`` events; past that, one event per variable, the latest (its
    ``old_value`` the first it replaced); past ``2 * buffer_size`` the stream is closed."""

    def __init__(self, keys: Iterable[str], *, buffer_size: int, grant: Any = None) -> None:
        self.keys = tuple(dict.fromkeys(keys))
        self.grant = grant  # what authorized it (access.Grant), checked again while it is open
        self.buffer_size = buffer_size
        self.pending: dict[object, StreamEvent] = {}
        self.wake = asyncio.Event()
        self.closed_reason: str | None = None
        self.coalesced = 0
        self.snapshot_taken = False
        self.heartbeat_due = False
        self.left = False
        self.leave: Callable[[], None] = lambda: None
        self._numbers = itertools.count()
        # Only a stream of several names or patterns can be sent one notification twice.
        self._recent: collections.deque[str] | None = (
            collections.deque(maxlen=_RECENT_IDS) if len(self.keys) > 1 else None
        )
        self._covered_seq: dict[str, int] = {}
        self._covered_version: dict[str, int] = {}
        self._shown_value: dict[str, str] = {}  # snapshot values without a version, as JSON
        self.positions: Positions | None = None  # what each event's id says (None: no ids)

    def offer(self, event: StreamEvent) -> None:
        """Take one event for sending (called on the event loop by the process's fan-out)."""
        if self.closed_reason is not None:
            return
        if self._recent is not None and event.notification_id is not None:
            if event.notification_id in self._recent:
                return
            self._recent.append(event.notification_id)
        if self.snapshot_taken and self._covered(event):
            return
        if len(self.pending) < self.buffer_size:
            self.pending[next(self._numbers)] = event
        elif not self.snapshot_taken:
            # Nothing coalesces across the snapshot (its old_value would be older than the value the
            # snapshot sends): while it is read, changes wait in full, up to a bound.
            if len(self.pending) >= _OPENING_FACTOR * self.buffer_size:
                self.close(TOO_BUSY_TO_OPEN)
                return
            self.pending[next(self._numbers)] = event
        else:
            self._coalesce(event)
        self.wake.set()

    def _coalesce(self, event: StreamEvent) -> None:
        key = ("latest", event.var_id)
        earlier = self.pending.get(key)
        if earlier is not None:
            self.pending[key] = messages.coalesced(earlier, event)
        elif len(self.pending) >= 2 * self.buffer_size:
            self.close(SLOW_CLIENT)
            return
        else:
            self.pending[key] = event
        self.coalesced += 1

    def take_snapshot(self, values: list[StreamEvent]) -> list[StreamEvent]:
        """Record what the snapshot read covers, and drop buffered changes it already holds; returns
        the events to send first: the snapshot, then the changes buffered since subscribing."""
        for event in values:
            if event.version is not None:
                self._covered_version[event.var_id] = event.version
            if event.data["metadata"].get("absent"):
                continue  # nothing shown: every change the stream's observer brings is sent
            if event.seq is not None:
                self._covered_seq[event.var_id] = event.seq
            if event.version is None:
                self._shown_value[event.var_id] = _canonical(event.data["new_value"])
        self.snapshot_taken = True
        # In seq order (the fan-out had no position yet to order them by): a value the snapshot shows is
        # recognised on the first change after its seq.
        buffered = sorted(self.pending.values(), key=lambda event: event.seq or 0)
        buffered = [event for event in buffered if not self._covered(event)]
        self.pending.clear()
        return [event for event in values if not event.data["metadata"].get("absent")] + buffered

    def take_resumed(self, missed: list[StreamEvent], positions: Positions) -> list[StreamEvent]:
        """A resume: the client has every change up to ``positions`` and is sent ``missed``; a change
        buffered since subscribing passes only past both (each variable's by seq), and so does every
        later one. Returns the events to send first: the missed ones, then the buffered ones."""
        self.positions = positions
        for var_id, (_, seq) in positions.marks.items():
            self._covered_seq[var_id] = seq
        for event in missed:
            if event.seq is not None:
                self._covered_seq[event.var_id] = max(event.seq, self._covered_seq.get(event.var_id, 0))
        self.snapshot_taken = True
        buffered = sorted(self.pending.values(), key=lambda event: event.seq or 0)
        self.pending.clear()
        passed = [event for event in buffered if not self._covered(event)]
        for event in passed:
            if event.seq is not None:
                self._covered_seq[event.var_id] = max(event.seq, self._covered_seq.get(event.var_id, 0))
        return missed + passed

    def wire(self, events: Iterable[StreamEvent]) -> bytes:
        """The events as the response sends them, each with this stream's id after it."""
        if self.positions is None:
            return b"".join(event.wire for event in events)
        chunks = []
        for event in events:
            self.positions.advance(event)
            chunks.append(b"id: " + self.positions.text().encode() + b"\n" + event.wire)
        return b"".join(chunks)

    def _covered(self, event: StreamEvent) -> bool:
        """A change the snapshot already shows: by version where the variable has one (exact even
        for a notification numbered after the snapshot was read), else by seq; and a model field's
        change numbered just after its row committed (the snapshot read the new value with the seq
        before it) by its values: the first change past the snapshot's seq that leads to the shown
        value from another one (a change that follows the shown value starts from it)."""
        version = self._covered_version.get(event.var_id)
        if version is not None and event.version is not None:
            return event.version <= version
        seq = self._covered_seq.get(event.var_id)
        if seq is not None and event.seq is not None and event.seq <= seq:
            return True
        shown = self._shown_value.pop(event.var_id, None)
        return (
            shown is not None
            and _canonical(event.data["new_value"]) == shown
            and _canonical(event.data["old_value"]) != shown
        )

    def heartbeat(self) -> None:
        self.heartbeat_due = True
        self.wake.set()

    def drain(self) -> bytes:
        """Everything waiting, as one chunk of the response (a heartbeat comment when due)."""
        chunk = self.wire(self.pending.values())
        if self.heartbeat_due:
            chunk, self.heartbeat_due = chunk or messages.HEARTBEAT, False
        self.pending.clear()
        self.wake.clear()
        return chunk

    def close(self, reason: str) -> None:
        self.closed_reason = reason
        self.pending.clear()
        self.wake.set()


def _canonical(value: object) -> str:
    """A value's JSON as the hub compares values (``1`` and ``True`` differ)."""
    return value_json("value", value)

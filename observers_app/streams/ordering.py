"""Puts a variable's notifications back in ``seq`` order in the web process.

Worker processes deliver in parallel: notification 2 may arrive just before notification 1.
"""

import asyncio
from collections.abc import Callable

from .messages import StreamEvent

# How long a gap in a variable's seqs is waited for before the events after it are sent anyway
# (a notification lost with a broker connection never comes).
GAP_WAIT_S = 2.0
# Variables whose last seq one subscription remembers (a pattern may match very many).
MAX_TRACKED = 10_000


class SeqOrder:
    """One subscription's per-variable position: events in order pass at once, an event after a gap
    waits for the gap (at most GAP_WAIT_S), a late or unnumbered one passes as it comes."""

    def __init__(self, emit: Callable[[StreamEvent], None], loop: asyncio.AbstractEventLoop) -> None:
        self.emit = emit
        self.loop = loop
        self.last: dict[str, int] = {}
        self.held: dict[str, dict[int, StreamEvent]] = {}
        self.timers: dict[str, asyncio.TimerHandle] = {}

    def start_from(self, var_id: str, seq: int) -> None:
        """The variable's seq at a snapshot: the next change is ``seq + 1``."""
        if var_id not in self.last:
            self._track(var_id, seq)

    def push(self, event: StreamEvent) -> None:
        var_id, seq = event.var_id, event.seq
        last = self.last.get(var_id)
        if seq is None or last is None or seq <= last:
            if seq is not None and (last is None or seq > last):
                self._track(var_id, seq)
            self.emit(event)
        elif seq == last + 1:
            self.last[var_id] = seq
            self.emit(event)
            self._release(var_id)
        else:
            self.held.setdefault(var_id, {})[seq] = event
            if var_id not in self.timers:
                self.timers[var_id] = self.loop.call_later(GAP_WAIT_S, self._give_up, var_id)

    def _release(self, var_id: str) -> None:
        held = self.held.get(var_id)
        while held and self.last[var_id] + 1 in held:
            self.last[var_id] += 1
            self.emit(held.pop(self.last[var_id]))
        if var_id in self.held and not held:
            del self.held[var_id]
            self.timers.pop(var_id).cancel()

    def _give_up(self, var_id: str) -> None:
        self.timers.pop(var_id, None)
        held = self.held.pop(var_id, {})
        for seq in sorted(held):
            self.last[var_id] = max(self.last[var_id], seq)
            self.emit(held[seq])

    def _track(self, var_id: str, seq: int) -> None:
        if len(self.last) >= MAX_TRACKED and not self.held:
            self.last.clear()
        self.last[var_id] = seq

    def close(self) -> None:
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        self.held.clear()
        self.emit = _drop  # the subscription is gone: no cycle back to it


def _drop(event: StreamEvent) -> None:
    pass

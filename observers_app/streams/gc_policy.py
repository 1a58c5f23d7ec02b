"""The garbage collection policy of a process serving streams (docs/streams.md#garbage-collection)."""

import gc
import time

# Seconds between a reclaim and the next, at most (anything frozen since is collected then).
RECLAIM_AFTER_S = 300.0
# Streams closed since the last reclaim that make the next one due, at least (and a quarter of the
# streams open): what they left in cycles is collected in bounded amounts.
RECLAIM_MIN_CLOSED = 100
# Objects frozen when the hub was loaded: the interpreter's own (Python 3.12 starts with some), not a
# host's, which freezes after loading its project (gunicorn --preload, before it forks).
FROZEN_AT_IMPORT = gc.get_freeze_count()


class GcPolicy:
    """Freezes what open streams hold out of full collections; reclaims what closed ones left."""

    def __init__(self) -> None:
        self.opened_since_freeze = 0
        self.closed_since_reclaim = 0
        self.last_reclaim = time.monotonic()
        self.frozen_since_reclaim = False
        # A host that froze objects itself manages its collector: unfreezing would undo that.
        self.host_froze = gc.get_freeze_count() > FROZEN_AT_IMPORT

    def opened(self) -> None:
        self.opened_since_freeze += 1

    def closed(self) -> None:
        self.closed_since_reclaim += 1

    def tick(self, open_streams: int) -> None:
        """Called every second or so by the process's fan-out: reclaim when due, else freeze what new
        streams allocated. Stands down while the host manages collection itself."""
        if self.host_froze or not gc.isenabled():
            return
        if self.reclaim_due(open_streams, time.monotonic()):
            self.reclaim()
        elif self.opened_since_freeze:
            gc.collect(1)  # young garbage is collected, not frozen
            gc.freeze()
            self.opened_since_freeze = 0
            self.frozen_since_reclaim = True

    def reclaim_due(self, open_streams: int, now: float) -> bool:
        if self.closed_since_reclaim >= max(RECLAIM_MIN_CLOSED, open_streams // 4):
            return True
        changed = self.closed_since_reclaim > 0 or self.frozen_since_reclaim
        return changed and now - self.last_reclaim >= RECLAIM_AFTER_S

    def reclaim(self) -> None:
        """One full collection over everything, then the survivors frozen again."""
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.opened_since_freeze = self.closed_since_reclaim = 0
        self.last_reclaim = time.monotonic()
        self.frozen_since_reclaim = False

"""A history replay's message run by a worker: one variable's kept entries, in seq order, delivered to
one observer through the normal path (``delivery.call_and_record``: isolated, timed, failures
recorded; a webhook's callback queues a signed POST with its retries). A page at a time: the page's
message publishes the next page's once it is done, so the observer gets them in order."""

import logging
import uuid
from typing import Any

from ..globs import glob_matches
from ..history.reading import history
from ..history.replay import publish, replay_message
from ..models import Observer
from ..querysets import DELIVERY_ROW
from ..telemetry import counters
from . import delivery

logger = logging.getLogger(__name__)

# The most entries one replay message delivers: a worker calls its observer that many times in a run.
REPLAY_PAGE = 100


def replay_run(observer_ref: str, var_id: str, first: int, last: int) -> int:
    """Call observer ``observer_ref`` with the kept entries of ``var_id`` numbered ``first`` to ``last``,
    in order, each with its original notification id, a page at a time (the next page's message sent
    when this one is done); returns how many it was called with. It stops when the observer is gone,
    quarantined (by these calls too) or its owner dead: it is not called once it would not be by a
    live notification."""
    ref = uuid.UUID(observer_ref)
    kept = history(var_id, after_seq=first - 1, limit=REPLAY_PAGE)
    page = [entry for entry in kept.entries if entry.seq <= last]
    called = 0
    counts: dict[str, int] = {}
    try:
        for entry in page:
            row = _live_row(ref, var_id)
            if row is None:
                logger.warning(
                    "event=replay_stopped observer=%s var_id=%r seq=%d reason=not_live",
                    ref,
                    var_id,
                    entry.seq,
                )
                return called
            notification: dict[str, Any] = {
                "var_id": var_id,
                "old_value": entry.old_value,
                "new_value": entry.new_value,
                "metadata": entry.metadata,
                "notification_id": entry.notification_id,
                "seq": entry.seq,
                "epoch": kept.epoch,
                "notified_at": entry.at.timestamp(),
                "replayed": True,
            }
            for name, n in delivery.call_and_record(
                notification, [row], dispatched=False, replayed=True
            ).items():
                counts[name] = counts.get(name, 0) + n
            called += 1
    finally:
        counters.increment(counts)
    if len(kept.entries) == REPLAY_PAGE and page and page[-1].seq < last:
        publish([replay_message(ref, var_id, page[-1].seq + 1, last)])
    return called


def _live_row(ref: uuid.UUID, var_id: str) -> tuple[Any, ...] | None:
    """The observer's delivery row while it is live and watches ``var_id`` (by name or glob)."""
    row = Observer.objects.live().filter(id=ref).values_list(*DELIVERY_ROW, "var_id", "is_glob").first()
    if row is None:
        return None
    *delivery_row, pattern, is_glob = row
    watches = glob_matches(pattern, var_id) if is_glob else pattern == var_id
    return tuple(delivery_row) if watches else None

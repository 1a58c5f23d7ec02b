"""Reaping: the observers of dead owners deleted, then the owners, once each death is certain."""

import logging
import time
import uuid
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper, Q
from django.db.models.functions import Now

from .. import aio, conf, signals
from ..models import Observer, Owner, Removal
from ..observers.removals import remove_in_batches
from ..telemetry import counters

Reason = Removal.Reason
logger = logging.getLogger(__name__)


def sweep_dead_observers(*, batch_size: int | None = None, grace_s: float | None = None) -> dict[str, int]:
    """Delete the observers of dead owners, then the owners, in bounded batches.

    A process owner that lost its lock without being closed is deleted only once it has been found
    dead for ``grace_s`` (OBSERVERS_OWNER_GRACE): its process may live on and take its lock again
    after a database restart. Closed owners and expired leases go at once. A dead owner is closed
    first (if it is still dead then), so that its process, back too late, knows it was swept.

    Each batch is its own transaction and takes its rows with ``select_for_update(skip_locked=True)``,
    so concurrent sweeps share the work instead of colliding.
    """
    started = time.perf_counter()
    batch_size = batch_size or conf.sweep_batch_size()
    removed: dict[str, int] = dict.fromkeys((Reason.OWNER_CLOSED, Reason.OWNER_DIED, Reason.SWEPT), 0)
    owners_removed = 0
    after: uuid.UUID | None = None
    # The database's clock, as for leases: the sweeps of several hosts agree on when a death began.
    Owner.objects.alive().filter(dead_since__isnull=False).update(dead_since=None)
    Owner.objects.dead().filter(dead_since__isnull=True).update(dead_since=Now())
    grace = timedelta(seconds=conf.owner_grace() if grace_s is None else grace_s)
    in_grace = Q(kind=Owner.Kind.PROCESS, closed_at__isnull=True) & Q(
        dead_since__gt=ExpressionWrapper(Now() - grace, output_field=DateTimeField())
    )
    while True:
        dead = Owner.objects.dead().exclude(in_grace).order_by("id")
        if after is not None:
            dead = dead.filter(id__gt=after)
        page = list(dead.values_list("id", "kind", "closed_at")[:100])
        if not page:
            break
        for owner_id, kind, closed_at in page:
            reason = _death_reason(kind, closed_at)
            if closed_at is None and not _close_if_still_dead(owner_id):
                continue  # alive again meanwhile (its process took its lock back): kept
            owned = Observer.objects.filter(owner_id=owner_id)
            removed[reason] += remove_in_batches(owned, reason, batch_size=batch_size, skip_locked=True)
            owners_removed += _delete_owner_if_empty(owner_id)
        after = page[-1][0]
    counters.increment({"cleanup_runs": 1, "owners_removed": owners_removed})
    logger.info(
        "event=sweep removed=%d owner_died=%d swept=%d owner_closed=%d owners_removed=%d duration_ms=%.1f",
        sum(removed.values()),
        removed[Reason.OWNER_DIED],
        removed[Reason.SWEPT],
        removed[Reason.OWNER_CLOSED],
        owners_removed,
        (time.perf_counter() - started) * 1000,
    )
    signals.observers_swept.send(None, removed=sum(removed.values()), owners=owners_removed)
    return {**{f"removed_{reason}": n for reason, n in removed.items()}, "owners_removed": owners_removed}


asweep_dead_observers = aio.async_twin(sweep_dead_observers)


def _death_reason(kind: str, closed_at: Any) -> str:
    if closed_at is not None:
        return Reason.OWNER_CLOSED
    return Reason.OWNER_DIED if kind == Owner.Kind.PROCESS else Reason.SWEPT


def _close_if_still_dead(owner_id: uuid.UUID) -> bool:
    """Close a dead owner before its observers go, in one statement that checks it is still dead: an
    owner that came back to life meanwhile keeps them, and one closed here cannot take new ones (its
    process finds it closed, and gets a new one: ``owners.process``)."""
    return bool(Owner.objects.dead().filter(id=owner_id, closed_at__isnull=True).update(closed_at=Now()))


def _delete_owner_if_empty(owner_id: uuid.UUID) -> int:
    with transaction.atomic():
        locked = Owner.objects.select_for_update(skip_locked=True).filter(id=owner_id)
        if not locked.exists() or Observer.objects.filter(owner_id=owner_id).exists():
            return 0
        deleted, _ = Owner.objects.filter(id=owner_id).delete()
    return 1 if deleted else 0

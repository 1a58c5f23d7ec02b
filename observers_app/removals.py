"""Removing observers for good: in batches that record why each went, and the periodic sweep."""

import functools
import logging
import time
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from . import backpressure, coalescing, conf, counters, events, outbox, poison, pruning
from .models import Observer, Owner, Removal, WebhookEndpoint
from .webhooks import attempts, messages

Reason = Removal.Reason
logger = logging.getLogger(__name__)


def sweep_dead_observers(*, batch_size: int | None = None, grace_s: float | None = None) -> dict[str, int]:
    """Delete the observers of dead owners, then the owners, in bounded batches.

    A process owner that lost its lock without being closed is deleted only once it has been found
    dead for ``grace_s`` (OBSERVERS_OWNER_GRACE): its process may live on and take its lock again
    after a database restart. Closed owners and expired leases go at once.

    Each batch is its own transaction and takes its rows with ``select_for_update(skip_locked=True)``,
    so concurrent sweeps share the work instead of colliding.
    """
    started = time.perf_counter()
    batch_size = batch_size or conf.sweep_batch_size()
    removed: dict[str, int] = dict.fromkeys((Reason.OWNER_CLOSED, Reason.OWNER_DIED, Reason.SWEPT), 0)
    owners_removed = 0
    after: uuid.UUID | None = None
    now = timezone.now()
    Owner.objects.alive().filter(dead_since__isnull=False).update(dead_since=None)
    Owner.objects.dead().filter(dead_since__isnull=True).update(dead_since=now)
    in_grace = Q(kind=Owner.Kind.PROCESS, closed_at__isnull=True) & Q(
        dead_since__gt=now - timedelta(seconds=conf.owner_grace() if grace_s is None else grace_s)
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
    events.observers_swept.send(None, removed=sum(removed.values()), owners=owners_removed)
    return {**{f"removed_{reason}": n for reason, n in removed.items()}, "owners_removed": owners_removed}


def sweep(*, batch_size: int | None = None) -> dict[str, int]:
    """The periodic sweep: dead owners and their observers, the count of shed notifications,
    coalescing mailboxes whose delivering worker died, durable notifications their callers left
    unpublished (workers publish them too), webhook retries now due, and the rows nobody needs any
    more (see ``pruning``)."""
    batch_size = batch_size or conf.sweep_batch_size()
    return {
        **sweep_dead_observers(batch_size=batch_size),
        "outbox_republished": outbox.publish_stale(),
        "attempts_pruned": poison.prune_attempts(),
        "notifications_shed": backpressure.drain_shed(),
        "coalescing_resumed": coalescing.resume_stalled(),
        **pruning.prune(batch_size),
        "webhook_retries_sent": attempts.release_due_retries(batch_size=batch_size),
    }


def _death_reason(kind: str, closed_at: Any) -> str:
    if closed_at is not None:
        return Reason.OWNER_CLOSED
    return Reason.OWNER_DIED if kind == Owner.Kind.PROCESS else Reason.SWEPT


def _delete_owner_if_empty(owner_id: uuid.UUID) -> int:
    with transaction.atomic():
        locked = Owner.objects.select_for_update(skip_locked=True).filter(id=owner_id)
        if not locked.exists() or Observer.objects.filter(owner_id=owner_id).exists():
            return 0
        deleted, _ = Owner.objects.filter(id=owner_id).delete()
    return 1 if deleted else 0


def remove_in_batches(
    observers: QuerySet[Observer], reason: str, *, batch_size: int | None = None, skip_locked: bool = False
) -> int:
    """Delete ``observers`` in batches, each its own transaction, recording why each went. Only the
    sweep skips rows another transaction holds (they are for another sweep); a removal the caller
    asked for waits for them."""
    batch_size = batch_size or conf.sweep_batch_size()
    total = 0
    while True:
        with transaction.atomic():
            rows = list(
                observers.select_for_update(skip_locked=skip_locked)
                .order_by("id")
                .values_list("id", "var_id", "callback", "owner_id")[:batch_size]
            )
            if not rows:
                return total
            Removal.objects.bulk_create(
                Removal(observer_ref=ref, var_id=var_id, callback=callback, owner_ref=owner_id, reason=reason)
                for ref, var_id, callback, owner_id in rows
            )
            if webhooks := [ref for ref, _, callback, _ in rows if callback == messages.WEBHOOK_CALLBACK]:
                _delete_endpoints(webhooks)
            deleted, _ = Observer.objects.filter(id__in=[row[0] for row in rows]).delete()
            counters.increment({"observers_removed": deleted, f"removed_{reason}": deleted})
            counters.adjust_observer_counts(_count_by_variable(rows))
            transaction.on_commit(functools.partial(_send_removed, rows, reason))
        total += deleted
        if len(rows) < batch_size:
            return total


def _delete_endpoints(refs: list[uuid.UUID]) -> None:
    """Delete webhook endpoints with their attempts and retries. Locked first: a worker writing an
    attempt meanwhile waits for this transaction, then finds its endpoint gone (instead of adding an
    attempt between the deletion of the attempts and of the endpoint, which fails this one)."""
    endpoints = WebhookEndpoint.objects.select_for_update().filter(observer_id__in=refs)
    list(endpoints.values_list("pk", flat=True))
    endpoints.delete()


def _count_by_variable(rows: list[tuple[Any, ...]]) -> dict[str, int]:
    removed = Counter(var_id for _, var_id, _, _ in rows)
    return {var_id: -n for var_id, n in removed.items()}


def _send_removed(rows: list[tuple[Any, ...]], reason: str) -> None:
    for ref, var_id, callback, owner_id in rows:
        events.observer_removed.send(
            None, ref=ref, var_id=var_id, callback=callback, owner=owner_id, reason=reason
        )

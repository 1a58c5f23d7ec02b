"""Latest value wins: a variable's coalescing observers get its newest value, intermediate ones collapsed.

Each dispatch of a variable that has coalescing observers puts its notification in the variable's
``Latest`` row, replacing (and counting as collapsed) one still waiting there. One worker at a time
holds the row's lease and delivers: it takes the newest waiting notification, delivers it with
``old_value`` set to the value it delivered last, and loops until nothing waits. So when
notifications come faster than these observers take them, they see fewer, newer values, in order.
"""

import logging
import uuid
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from .. import conf
from ..db import DATABASE_ERRORS
from ..models import Latest, Observer
from ..telemetry import counters
from . import delivery

logger = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
# Marks the waiting notification a worker is delivering (it stays until delivered).
TAKEN = "taken"


def offer(notification: dict[str, Any]) -> str | None:
    """Leave ``notification`` for the variable's coalescing observers. When no worker was
    delivering them, returns the lease token the caller now holds: it must call ``deliver_waiting``
    with it (after the rest of its batch is offered, so that its own notifications collapse too),
    or ``release`` it."""
    var_id = notification["var_id"]
    with transaction.atomic():
        latest, _ = Latest.objects.select_for_update().get_or_create(var_id=var_id)
        waiting = latest.pending
        if notification["seq"] <= latest.delivered_seq:
            collapsed = 1  # older than what these observers already have: never deliver it after
        elif waiting is not None and waiting["seq"] > notification["seq"]:
            collapsed = 1  # older than the one waiting
        else:
            # Replacing one being delivered collapses nothing: that one is reaching its observers.
            collapsed = 1 if waiting is not None and not waiting.get(TAKEN) else 0
            latest.pending = notification
        latest.collapsed += collapsed
        token = _lease_if_free(latest)
        latest.save()
        counters.increment({"notifications_coalesced": collapsed})
    return token


def deliver_waiting(var_id: str, globs: list[str], token: str) -> None:
    """Deliver the newest waiting notification until none waits, then release the lease; stops
    early if the lease was lost (it ran out and another worker took over).

    A notification stays in the row until it has been delivered (marked as taken meanwhile), and the
    lease (a token, checked at every step) is renewed per page of observers: if its holder dies, the
    sweep finds the lease run out and delivers what waits, so a value is delivered late (at most LEASE
    plus a sweep interval), never lost."""
    while (notification := _take_waiting(var_id, token)) is not None:
        coalescing = Observer.objects.live().matching(var_id, globs).filter(coalesce=True)
        after = None
        while page := coalescing.page_ids(after=after, limit=conf.batch_size()):
            delivery.deliver(notification, after=after, upto=page[-1], globs=globs, coalesce=True)
            after = page[-1]
            if not _held(var_id, token).update(lease_until=timezone.now() + LEASE):
                return
        _mark_delivered(var_id, notification, token)


def release(leases: dict[str, str]) -> None:
    """Give up leases taken but not delivered (a batch that failed first), so the next offer or
    the sweep delivers what waits without waiting for the lease to run out. Best effort: with the
    database gone, the leases run out instead."""
    try:
        for var_id, token in leases.items():
            _held(var_id, token).update(lease_until=None, lease_holder="")
    except DATABASE_ERRORS:
        logger.warning("event=coalescing_release_failed variables=%d", len(leases), exc_info=True)


def resume_stalled() -> int:
    """Deliver what waits in mailboxes whose lease ran out (its holder died); returns how many.
    Run by the sweep."""
    resumed = 0
    stalled = Latest.objects.filter(pending__isnull=False).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=timezone.now())
    )
    for var_id in stalled.values_list("var_id", flat=True)[: conf.sweep_batch_size()]:
        with transaction.atomic():
            latest = Latest.objects.select_for_update(skip_locked=True).filter(var_id=var_id).first()
            token = _lease_if_free(latest) if latest is not None else None
            if latest is not None and token:
                latest.save(update_fields=["lease_until", "lease_holder"])
        if token:
            deliver_waiting(var_id, Observer.objects.globs_matching(var_id), token)
            resumed += 1
    return resumed


def _lease_if_free(latest: Latest) -> str | None:
    now = timezone.now()
    if latest.pending is None or (latest.lease_until is not None and latest.lease_until >= now):
        return None
    latest.lease_until, latest.lease_holder = now + LEASE, uuid.uuid4().hex
    return latest.lease_holder


def _held(var_id: str, token: str) -> "QuerySet[Latest]":
    return Latest.objects.filter(var_id=var_id, lease_holder=token)


def _take_waiting(var_id: str, token: str) -> dict[str, Any] | None:
    """The newest waiting notification, its old value the one delivered last, marked taken (it
    stays until delivered); None when the lease was lost, or (the lease released) nothing waits."""
    with transaction.atomic():
        latest = Latest.objects.select_for_update().get(var_id=var_id)
        if latest.lease_holder != token:
            return None
        pending = latest.pending
        if pending is None:
            latest.lease_until, latest.lease_holder = None, ""
            latest.save(update_fields=["lease_until", "lease_holder"])
            return None
        old_value = latest.delivered_value if latest.has_delivered else pending["old_value"]
        if not pending.get(TAKEN):
            pending["coalesced"], latest.collapsed = latest.collapsed, 0
        latest.pending = {**pending, TAKEN: True}
        latest.lease_until = timezone.now() + LEASE
        latest.save(update_fields=["pending", "collapsed", "lease_until"])
    notification = {key: value for key, value in pending.items() if key != TAKEN}
    return {**notification, "old_value": old_value}


def _mark_delivered(var_id: str, notification: dict[str, Any], token: str) -> None:
    """Record what these observers now have (never going back to an older seq); the waiting
    notification goes unless a newer one replaced it meanwhile. Not if the lease was lost."""
    with transaction.atomic():
        latest = Latest.objects.select_for_update().get(var_id=var_id)
        if latest.lease_holder != token or notification["seq"] < latest.delivered_seq:
            return
        if latest.pending is not None and latest.pending["seq"] == notification["seq"]:
            latest.pending = None
        latest.delivered_value = notification["new_value"]
        latest.delivered_seq = notification["seq"]
        latest.has_delivered = True
        latest.save(update_fields=["pending", "delivered_value", "delivered_seq", "has_delivered"])

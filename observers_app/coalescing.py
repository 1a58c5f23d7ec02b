"""Latest value wins: a variable's coalescing observers get its newest value, intermediate ones collapsed.

Each dispatch of a variable that has coalescing observers puts its notification in the variable's
``Latest`` row, replacing (and counting as collapsed) one still waiting there. One worker at a time
holds the row's lease and delivers: it takes the newest waiting notification, delivers it with
``old_value`` set to the value it delivered last, and loops until nothing waits. So when
notifications come faster than these observers take them, they see fewer, newer values, in order.
"""

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from . import conf, counters, fanout
from .models import Latest, Observer

LEASE = timedelta(seconds=60)


def offer(notification: dict[str, Any]) -> bool:
    """Leave ``notification`` for the variable's coalescing observers. True when no worker was
    delivering them: the caller now holds the lease and must call ``deliver_waiting`` (after the
    rest of its batch is offered, so that its own notifications collapse too)."""
    var_id = notification["var_id"]
    with transaction.atomic():
        latest, _ = Latest.objects.select_for_update().get_or_create(var_id=var_id)
        waiting = latest.pending
        if notification["seq"] <= latest.delivered_seq:
            collapsed = 1  # older than what these observers already have: never deliver it after
        elif waiting is not None and waiting["seq"] > notification["seq"]:
            collapsed = 1  # older than the one waiting
        else:
            collapsed = 1 if waiting is not None else 0
            latest.pending = notification
        latest.collapsed += collapsed
        now = timezone.now()
        delivering = latest.pending is not None and (latest.lease_until is None or latest.lease_until < now)
        if delivering:
            latest.lease_until = now + LEASE
        latest.save()
        counters.increment({"notifications_coalesced": collapsed})
    return delivering


def deliver_waiting(var_id: str, globs: list[str]) -> None:
    """Deliver the newest waiting notification until none waits, then release the lease."""
    while (notification := _take_waiting(var_id)) is not None:
        coalescing = Observer.objects.live().matching(var_id, globs).filter(coalesce=True)
        after = None
        while page := coalescing.page_ids(after=after, limit=conf.batch_size()):
            fanout.deliver(notification, after=after, upto=page[-1], globs=globs, coalesce=True)
            after = page[-1]
        Latest.objects.filter(var_id=var_id).update(
            delivered_value=notification["new_value"], delivered_seq=notification["seq"], has_delivered=True
        )


def _take_waiting(var_id: str) -> dict[str, Any] | None:
    """The newest waiting notification, its old value the one delivered last; None (and the lease
    released) when nothing waits."""
    with transaction.atomic():
        latest = Latest.objects.select_for_update().get(var_id=var_id)
        pending = latest.pending
        if pending is None:
            latest.lease_until = None
            latest.save(update_fields=["lease_until"])
            return None
        old_value = latest.delivered_value if latest.has_delivered else pending["old_value"]
        notification = {**pending, "old_value": old_value, "coalesced": latest.collapsed}
        latest.pending, latest.collapsed, latest.lease_until = None, 0, timezone.now() + LEASE
        latest.save(update_fields=["pending", "collapsed", "lease_until"])
    return notification

"""The worker's side of a notification: number it, page its observers, call them, record the outcome."""

import json
import logging
import time
import uuid
from typing import Any

from django.db import connection, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from . import coalescing as coalescing_module
from . import conf, counters, delivery, events, publisher
from .models import Observer, Removal, VariableState

logger = logging.getLogger(__name__)

DISPATCH_TASK = "observers.dispatch"
DELIVER_TASK = "observers.deliver"
# What delivering needs of each observer row.
_ROW = ("id", "callback", "failures", "owner_id")


def fan_out(
    *,
    var_id: str,
    old_value: Any,
    new_value: Any,
    metadata: dict[str, Any] | None,
    notification_id: str,
    notified_at: float,
    seq: int | None,
) -> None:
    """Number the notification (unless its sender did), send a deliver task per further page of
    observers, and deliver the first page here."""
    size = conf.batch_size()
    globs = Observer.objects.globs_matching(var_id)
    reached = Observer.objects.live().matching(var_id, globs)
    # The first page, read once: its ordered observers are called here, without a second read.
    first_page = list(reached.order_by("id").values_list(*_ROW, "coalesce")[:size])
    if not first_page:
        # A sender's cached "has observers" outlived the last live observer.
        counters.increment({"empty_dispatches": 1})
        return
    ordered_rows = [row[:-1] for row in first_page if not row[-1]]
    coalescing = any(row[-1] for row in first_page) or (
        len(first_page) == size and reached.filter(coalesce=True).exists()
    )
    notification = {
        "var_id": var_id,
        "old_value": old_value,
        "new_value": new_value,
        "metadata": metadata,
        "notification_id": notification_id,
        "seq": next_seq(var_id) if seq is None else _touch_state(var_id, seq),
        "notified_at": notified_at,
    }
    fanout = len(first_page)
    if len(first_page) == size:
        after = first_page[-1][0]
        notification_json = json.dumps(notification, separators=(",", ":"))
        globs_json = json.dumps(globs)
        ordered = reached.filter(coalesce=False)
        while page := ordered.page_ids(after=after, limit=size):
            publisher.publish_task(DELIVER_TASK, f'[{notification_json},"{after}","{page[-1]}",{globs_json}]')
            after, fanout = page[-1], fanout + len(page)
    events.notification_dispatched.send(
        None, var_id=var_id, notification_id=notification_id, seq=notification["seq"], fanout=fanout
    )
    _call_and_record(notification, ordered_rows, dispatched=True)
    if coalescing:
        coalescing_module.offer(notification, globs)


def deliver(
    notification: dict[str, Any],
    *,
    after: uuid.UUID | str | None,
    upto: uuid.UUID | str,
    globs: list[str],
    dispatched: bool = False,
    coalesce: bool = False,
) -> None:
    """Call the live observers of one page (the coalescing ones or the others), then record the
    outcome in one batch of writes (counting the notification too when ``dispatched``)."""
    rows = list(
        Observer.objects.live()
        .matching(notification["var_id"], globs)
        .filter(coalesce=coalesce)
        .in_page(after=_as_uuid(after), upto=_as_uuid(upto))
        .values_list(*_ROW)
    )
    _call_and_record(notification, rows, dispatched=dispatched)


def _call_and_record(notification: dict[str, Any], rows: list[tuple[Any, ...]], *, dispatched: bool) -> None:
    outcome = delivery.call_observers(
        [(ref, callback, failures) for ref, callback, failures, _ in rows],
        notification,
        time_limit=conf.callback_time_limit(),
    )
    quarantined: list[tuple[Any, ...]] = []
    with transaction.atomic():
        if outcome.failed:
            newly = _record_failures(outcome.failed)
            quarantined = [row for row in rows if row[0] in newly]
        if quarantined:
            _record_quarantines(notification["var_id"], quarantined, outcome.failed)
        if outcome.recovered:
            Observer.objects.filter(id__in=outcome.recovered).update(failures=0)
        counters.increment(
            {
                "notifications_dispatched": int(dispatched),
                "notifications_sent": outcome.called,
                "notifications_failed": len(outcome.failed),
                "removed_quarantined": len(quarantined),
            }
        )
    if rows:
        _send_delivery_events(notification, rows, outcome, quarantined)


def _as_uuid(value: uuid.UUID | str | None) -> uuid.UUID | None:
    return uuid.UUID(str(value)) if value is not None else None


def _record_failures(failed: dict[uuid.UUID, str]) -> set[uuid.UUID]:
    """Count the failures; returns the observers this update quarantined (decided by the database,
    from their failure counts as they are now, so concurrent deliveries cannot disagree)."""
    now = timezone.now()
    errors = [When(id=ref, then=Value(error)) for ref, error in failed.items()]
    Observer.objects.filter(id__in=list(failed)).update(
        failures=F("failures") + 1,
        last_error=Case(*errors),
        last_failed_at=now,
        quarantined_at=Case(
            When(failures__gte=conf.quarantine_after() - 1, quarantined_at__isnull=True, then=Value(now)),
            default=F("quarantined_at"),
        ),
    )
    return set(Observer.objects.filter(id__in=list(failed), quarantined_at=now).values_list("id", flat=True))


def _record_quarantines(var_id: str, rows: list[tuple[Any, ...]], failed: dict[uuid.UUID, str]) -> None:
    for ref, callback, failures, _ in rows:
        logger.warning(
            "event=observer_quarantined observer=%s callback=%s var_id=%r failures=%d error=%r",
            ref,
            callback,
            var_id,
            failures + 1,
            failed[ref],
        )
    Removal.objects.bulk_create(
        Removal(
            observer_ref=ref,
            var_id=var_id,
            callback=callback,
            owner_ref=owner_id,
            reason=Removal.Reason.QUARANTINED,
            detail=failed[ref],
        )
        for ref, callback, _, owner_id in rows
    )


def next_seq(var_id: str) -> int:
    """Advance and return the variable's sequence number in one round trip.

    Inside a transaction the variable's state row stays locked until commit, so numbers taken
    in transactions follow their commit order.
    """
    table = connection.ops.quote_name(VariableState._meta.db_table)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (var_id, seq, last_notified_at) VALUES (%s, 1, %s) "  # noqa: S608
            f"ON CONFLICT (var_id) DO UPDATE SET seq = {table}.seq + 1, "
            "last_notified_at = excluded.last_notified_at RETURNING seq",
            [var_id, now],
        )
        row = cursor.fetchone()
    return int(row[0])


def _touch_state(var_id: str, seq: int) -> int:
    VariableState.objects.filter(var_id=var_id).update(last_notified_at=timezone.now())
    return seq


def _send_delivery_events(
    notification: dict[str, Any],
    rows: list[tuple[Any, ...]],
    outcome: delivery.BatchOutcome,
    quarantined: list[tuple[Any, ...]],
) -> None:
    var_id = notification["var_id"]
    callbacks = {ref: callback for ref, callback, _, _ in rows}
    for ref, error in outcome.failed.items():
        events.callback_failed.send(None, ref=ref, var_id=var_id, callback=callbacks[ref], error=error)
    for ref, callback, _, owner_id in quarantined:
        events.observer_removed.send(
            None, ref=ref, var_id=var_id, callback=callback, owner=owner_id, reason="quarantined"
        )
    events.callbacks_delivered.send(
        None,
        var_id=var_id,
        ok=outcome.called - len(outcome.failed),
        failed=len(outcome.failed),
        latency_s=time.time() - notification["notified_at"],
    )

"""The worker's side of a notification: number it, page its observers, call them, record the outcome."""

import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from . import coalescing as coalescing_module
from . import conf, counters, delivery, events, publisher
from .models import Observer, Removal, VariableState
from .querysets import DELIVERY_ROW, ObserverQuerySet, as_uuid, globs_among, prepared_rows

logger = logging.getLogger(__name__)

# The database went away (a disconnect, a restart): retried or redelivered, never a notification's
# own failure.
DATABASE_ERRORS = (OperationalError, InterfaceError)
# How long a batch's numbering waits for a row lock before numbering row by row (see _number).
LOCK_WAIT = "50ms"
LOCK_NOT_AVAILABLE = "55P03"

DISPATCH_TASK = "observers.dispatch"
DELIVER_TASK = "observers.deliver"


def fan_out(notifications: list[dict[str, Any]]) -> Iterator[str | None]:
    """Fan out a batch of notifications (the dispatch messages one pool job took), in their order,
    yielding for each None once it is delivered, or its error if it failed: number it (unless its
    sender did), send a deliver task per further page of its observers, deliver its first page
    here. Each one's observers are read just before it is delivered, so one removed (or whose owner
    died) meanwhile is not called. The glob patterns are read once and the counters written once,
    at the end. A database error is raised: what was yielded before it was delivered."""
    size = conf.batch_size()
    patterns = Observer.objects.glob_patterns()
    _number(notifications)
    counts: Counter[str] = Counter()
    leased: dict[str, str] = {}  # variable -> lease token, until its mailbox is delivered
    try:
        for notification in notifications:
            try:
                coalescing, one_counts = _fan_out_one(notification, patterns, size=size)
            except DATABASE_ERRORS:
                raise
            except Exception as exc:
                logger.exception("event=dispatch_failed var_id=%r", notification["var_id"])
                yield f"{type(exc).__name__}: {exc}"
                continue
            counts.update(one_counts)
            if coalescing and (token := coalescing_module.offer(notification)):
                leased[notification["var_id"]] = token
            yield None
        counters.increment(counts)
        # After the whole batch is offered: the batch's own notifications of a variable collapse too.
        for var_id, token in list(leased.items()):
            coalescing_module.deliver_waiting(var_id, globs_among(patterns, var_id), token)
            del leased[var_id]
    finally:
        if leased:
            coalescing_module.release(leased)


def _fan_out_one(
    notification: dict[str, Any], patterns: list[str], *, size: int
) -> tuple[bool, dict[str, int]]:
    """Deliver one notification to its ordered observers; returns whether it has coalescing ones,
    and the counters to add."""
    var_id = notification["var_id"]
    globs = globs_among(patterns, var_id)
    # The first page, read once: its ordered observers are called here, without a second read.
    # With no glob matching (the common case), a statement compiled once reads it.
    if globs:
        first_page = list(
            _reached(var_id, globs).order_by("id").values_list(*DELIVERY_ROW, "coalesce")[:size]
        )
    else:
        first_page = Observer.objects.first_delivery_page(var_id, limit=size)
    if not first_page:
        # A sender's cached "has observers" outlived the last live observer.
        return False, {"empty_dispatches": 1}
    ordered_rows = [row[:-1] for row in first_page if not row[-1]]
    full = len(first_page) == size
    coalescing = any(row[-1] for row in first_page) or (
        full and _reached(var_id, globs).filter(coalesce=True).exists()
    )
    fanout = len(first_page)
    if full:
        after = first_page[-1][0]
        notification_json = json.dumps(notification, separators=(",", ":"))
        globs_json = json.dumps(globs)
        ordered = _reached(var_id, globs).filter(coalesce=False)
        while page := ordered.page_ids(after=after, limit=size):
            publisher.publish_task(DELIVER_TASK, f'[{notification_json},"{after}","{page[-1]}",{globs_json}]')
            after, fanout = page[-1], fanout + len(page)
    events.notification_dispatched.send(
        None,
        var_id=var_id,
        notification_id=notification["notification_id"],
        seq=notification["seq"],
        fanout=fanout,
    )
    return coalescing, _call_and_record(notification, ordered_rows, dispatched=True)


def _reached(var_id: str, globs: list[str]) -> ObserverQuerySet:
    return Observer.objects.live().matching(var_id, globs)


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
        _reached(notification["var_id"], globs)
        .filter(coalesce=coalesce)
        .in_page(after=as_uuid(after), upto=as_uuid(upto))
        .values_list(*DELIVERY_ROW)
    )
    counters.increment(_call_and_record(notification, rows, dispatched=dispatched))


def _call_and_record(
    notification: dict[str, Any], rows: list[tuple[Any, ...]], *, dispatched: bool
) -> dict[str, int]:
    """Call the rows' observers and record failures, recoveries and quarantines; returns the
    counters to add (the caller adds them, once per batch)."""
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
    if rows:
        _send_delivery_events(notification, rows, outcome, quarantined)
    return {
        "notifications_dispatched": int(dispatched),
        "notifications_sent": outcome.called,
        "notifications_failed": len(outcome.failed),
        "removed_quarantined": len(quarantined),
    }


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
    return _advance_seqs({var_id: 1})[var_id]


def _number(notifications: list[dict[str, Any]]) -> None:
    """Number the notifications their senders did not: each gets its variable's next ``seq``, in
    batch order, the batch's numbers taken in one statement (one commit, not one per notification).

    That statement locks several rows, while a caller numbering with ``ordered=True`` may hold one
    of them in its own transaction: so on PostgreSQL it waits at most LOCK_WAIT for a lock, and
    falls back to one row per statement. It never holds a row while waiting long enough for the
    deadlock detector to pick the caller's transaction as the victim."""
    unnumbered = Counter(n["var_id"] for n in notifications if n["seq"] is None)
    if not unnumbered:
        return
    if connection.vendor != "postgresql" or len(unnumbered) == 1:
        last = _advance_seqs(unnumbered)
    else:
        try:
            with transaction.atomic():
                prepared_rows(connection, "SELECT set_config('lock_timeout', %s, true)", [LOCK_WAIT])
                last = _advance_seqs(unnumbered)
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            last = {var_id: _advance_seqs({var_id: count})[var_id] for var_id, count in unnumbered.items()}
    following = {var_id: last[var_id] - count + 1 for var_id, count in unnumbered.items()}
    for notification in notifications:
        if notification["seq"] is None:
            notification["seq"] = following[notification["var_id"]]
            following[notification["var_id"]] += 1


def _advance_seqs(counts: dict[str, int]) -> dict[str, int]:
    """Advance each variable's sequence number by its count in one statement (rows in name order);
    returns each one's new (highest) number."""
    now = timezone.now()
    sql, params = counters.upsert_add(
        VariableState._meta.db_table,
        ("var_id",),
        "seq",
        [(var_id, count, now) for var_id, count in counts.items()],
        "last_notified_at",
        refreshed=("last_notified_at",),
        returning=("var_id", "seq"),
    )
    return {var_id: int(seq) for var_id, seq in prepared_rows(connection, sql, params)}


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

"""Page delivery: call the live observers of one page of a notification, then record the outcome."""

import logging
import time
import uuid
from typing import Any

from django.db import connection, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from .. import conf, signals
from ..db import as_uuid, uuid_of
from ..models import Observer, Removal
from ..querysets import DELIVERY_ROW, ObserverQuerySet
from ..telemetry import counters
from . import calls, pacing

logger = logging.getLogger(__name__)

# A page is read this many batch sizes at a time: whole, whatever its estimate held, unless it holds
# far more than expected. Pages of cheap callbacks hold more than the batch size (worker.pacing):
# those of callbacks down to about 3 us are read in one statement (each more costs a busy worker a
# round trip and a wait for the CPU, 3-5 ms on two cores).
CHUNK_BATCHES = 8


def reached(var_id: str, globs: list[str]) -> ObserverQuerySet:
    """The live observers a notification of ``var_id`` reaches (``globs``: the patterns matching it)."""
    return Observer.objects.live().matching(var_id, globs)


def deliver(
    notification: dict[str, Any],
    *,
    after: uuid.UUID | str | None,
    upto: uuid.UUID | str,
    globs: list[str],
    coalesce: bool = False,
) -> None:
    """Call the live observers of one page (the coalescing ones or the others), then record the
    outcome in one batch of writes per chunk (the dispatch counts the notification itself).

    The page is read in id order, at most CHUNK_BATCHES batch sizes at a time: a page whose bounds
    were estimated (``dispatch.further_pages``) and hold more is delivered in several chunks, never
    read whole. Without globs (the common case) a chunk is read by a statement compiled once, which on
    PostgreSQL also counts the callbacks about to be called (``notifications_sent``): a chunk
    without failures costs one round trip. A worker killed in the middle of the page has counted
    all it read, and its redelivery counts it again."""
    counted = not globs and connection.vendor == "postgresql" and not connection.in_atomic_block
    limit = CHUNK_BATCHES * conf.batch_size()
    while True:
        rows = _read(
            notification["var_id"],
            globs,
            after=after,
            upto=upto,
            coalesce=coalesce,
            limit=limit,
            counted=counted,
        )
        counts = call_and_record(notification, rows, dispatched=False)
        if counted:
            counts["notifications_sent"] = 0  # counted as the chunk was read
        counters.increment(counts)
        if len(rows) < limit:
            return
        # The highest id read (as ids come back: all text, or all UUIDs): the next chunk's lower bound.
        after = max(row[0] for row in rows)


def _read(
    var_id: str,
    globs: list[str],
    *,
    after: uuid.UUID | str | None,
    upto: uuid.UUID | str,
    coalesce: bool,
    limit: int,
    counted: bool,
) -> list[tuple[Any, ...]]:
    if globs:
        return list(
            reached(var_id, globs)
            .filter(coalesce=coalesce)
            .in_page(after=as_uuid(after), upto=as_uuid(upto))
            .order_by("id")
            .values_list(*DELIVERY_ROW)[:limit]
        )
    return Observer.objects.delivery_page(
        var_id,
        after=as_uuid(after),
        upto=uuid_of(upto),
        coalesce=coalesce,
        limit=limit,
        counted_as="notifications_sent" if counted else None,
    )


def call_and_record(
    notification: dict[str, Any], rows: list[tuple[Any, ...]], *, dispatched: bool, replayed: bool = False
) -> dict[str, int]:
    """Call the rows' observers and record failures, recoveries and quarantines; returns the
    counters to add (the caller adds them, once per batch). A ``replayed`` notification (from the
    history) is counted apart, and left out of the delivery latencies (it is old by design). The
    callbacks' time is kept (``pacing``): it sizes this process's next fan-outs' pages."""
    started = time.perf_counter()
    outcome = calls.call_observers(
        [(ref, callback, failures) for ref, callback, failures, _ in rows],
        notification,
        time_limit=conf.callback_time_limit(),
    )
    pacing.record({row[1] for row in rows}, time.perf_counter() - started, outcome.called)
    quarantined: list[tuple[Any, ...]] = []
    if outcome.failed or outcome.recovered:
        with transaction.atomic():
            if outcome.failed:
                newly = _record_failures(outcome.failed)
                quarantined = [row for row in rows if as_uuid(row[0]) in newly]
            if quarantined:
                _record_quarantines(notification["var_id"], quarantined, outcome.failed)
            if outcome.recovered:
                Observer.objects.filter(id__in=outcome.recovered).update(failures=0)
    if rows:
        _send_delivery_events(notification, rows, outcome, quarantined, timed=not replayed)
    return {
        "notifications_dispatched": int(dispatched),
        "history_replayed" if replayed else "notifications_sent": outcome.called,
        "notifications_failed": len(outcome.failed),
        "removed_quarantined": len(quarantined),
    }


def _record_failures(failed: dict[calls.Ref, str]) -> set[uuid.UUID]:
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


def _record_quarantines(var_id: str, rows: list[tuple[Any, ...]], failed: dict[calls.Ref, str]) -> None:
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


def _send_delivery_events(
    notification: dict[str, Any],
    rows: list[tuple[Any, ...]],
    outcome: calls.BatchOutcome,
    quarantined: list[tuple[Any, ...]],
    *,
    timed: bool,
) -> None:
    var_id = notification["var_id"]
    callbacks = {ref: callback for ref, callback, _, _ in rows} if outcome.failed else {}
    # The signals give UUIDs, whichever way the page was read (its ids' text, or UUIDs).
    for ref, error in outcome.failed.items():
        signals.callback_failed.send(
            None, ref=uuid_of(ref), var_id=var_id, callback=callbacks[ref], error=error
        )
    for ref, callback, _, owner_id in quarantined:
        signals.observer_removed.send(
            None,
            ref=uuid_of(ref),
            var_id=var_id,
            callback=callback,
            owner=as_uuid(owner_id),
            reason="quarantined",
        )
    if not timed:
        return
    signals.callbacks_delivered.send(
        None,
        var_id=var_id,
        ok=outcome.called - len(outcome.failed),
        failed=len(outcome.failed),
        latency_s=time.time() - notification["notified_at"],
    )

"""Removing observers for good: in batches, each recording why every observer went."""

import functools
import uuid
from collections import Counter
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from .. import aio, conf, signals, validation
from ..db import new_epoch_sql, prepared_rows
from ..models import Observer, Removal, StatCounter, VariableState, WebhookEndpoint
from ..publishing import presence
from ..telemetry import counters

Reason = Removal.Reason


def remove_observer(var_id: str, ref: uuid.UUID | str) -> bool:
    """Remove one observer; False when ``var_id`` has no observer ``ref``."""
    validation.check_name(var_id, stored=True)  # one stored before names were checked can still go
    ref = validation.check_ref(ref)
    removed = _remove_one(var_id, ref) if connection.vendor == "postgresql" else 0
    if not removed:  # a webhook's (its endpoint goes too), none, or not on PostgreSQL
        removed = remove_in_batches(Observer.objects.for_variable(var_id).filter(id=ref), Reason.REMOVED)
    presence.forget(var_id)
    return bool(removed)


aremove_observer = aio.async_twin(remove_observer)


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
            if webhooks := [ref for ref, _, callback, _ in rows if callback == WebhookEndpoint.CALLBACK]:
                _delete_endpoints(webhooks)
            deleted, _ = Observer.objects.filter(id__in=[row[0] for row in rows]).delete()
            counters.increment({"observers_removed": deleted, f"removed_{reason}": deleted})
            counters.adjust_observer_counts(_count_by_variable(rows))
            transaction.on_commit(functools.partial(_send_removed, rows, reason))
        total += deleted
        if len(rows) < batch_size:
            return total


def _remove_one(var_id: str, ref: uuid.UUID) -> int:
    """Remove observer ``ref`` of ``var_id`` unless it is a webhook's, in one statement (one round
    trip, committed alone outside a transaction): it deletes the row, records the removal, lowers the
    name's count (a new epoch when none is left) and adds to the counters. The observer's row is
    locked first (the CTE the statement reads), then the counters' and the name's (PostgreSQL runs
    the unread CTEs last, the later ones first): the order ``remove_in_batches`` takes them in.
    Returns how many it removed (0 or 1)."""
    quote = connection.ops.quote_name
    observers, removals = quote(Observer._meta.db_table), quote(Removal._meta.db_table)
    states, stats = quote(VariableState._meta.db_table), quote(StatCounter._meta.db_table)
    reason, now = Reason.REMOVED, timezone.now()
    rows = prepared_rows(
        connection,
        f"WITH gone AS (DELETE FROM {observers} WHERE id = %s AND var_id = %s AND callback <> %s "  # noqa: S608
        "RETURNING id, var_id, callback, owner_id), "
        f"logged AS (INSERT INTO {removals} (observer_ref, var_id, callback, owner_ref, reason, detail, "
        "removed_at) SELECT id, var_id, callback, owner_id, %s, '', %s FROM gone), "
        f"counted AS (INSERT INTO {states} (var_id, observer_count) SELECT var_id, -1 FROM gone "
        f"ON CONFLICT (var_id) DO UPDATE SET observer_count = {states}.observer_count - 1, "
        f"epoch = CASE WHEN {states}.observer_count <= 1 THEN {new_epoch_sql(connection.vendor)} "
        f"ELSE {states}.epoch END), "
        f"totals AS (INSERT INTO {stats} (name, value, created_at) "
        "SELECT name, 1, %s FROM gone, unnest(%s::varchar[]) AS name "
        f"ON CONFLICT (name) DO UPDATE SET value = {stats}.value + 1) "
        "SELECT id, var_id, callback, owner_id FROM gone",
        [ref, var_id, WebhookEndpoint.CALLBACK, reason, now, now, ["observers_removed", f"removed_{reason}"]],
    )
    transaction.on_commit(functools.partial(_send_removed, rows, reason))
    return len(rows)


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
        signals.observer_removed.send(
            None, ref=ref, var_id=var_id, callback=callback, owner=owner_id, reason=reason
        )

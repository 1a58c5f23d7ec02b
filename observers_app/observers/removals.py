"""Removing observers for good: in batches, each recording why every observer went."""

import functools
import uuid
from collections import Counter
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from .. import aio, conf, signals, validation
from ..models import Observer, Removal, WebhookEndpoint
from ..publishing import presence
from ..telemetry import counters

Reason = Removal.Reason


def remove_observer(var_id: str, ref: uuid.UUID | str) -> bool:
    """Remove one observer; False when ``var_id`` has no observer ``ref``."""
    validation.check_name(var_id, stored=True)  # one stored before names were checked can still go
    ref = validation.check_ref(ref)
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

"""Poison messages: a dispatch or deliver message that never finishes is parked as a dead letter after
OBSERVERS_MAX_DELIVERIES deliveries, counted, and replayable once the cause is fixed.

A message that fails is requeued (not dropped) and counted here by its task id; so is one the broker
delivers again because the worker process running it died. A redelivery costs one upsert; a message
that succeeds the first time costs nothing.
"""

import json
import logging
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from .. import aio, conf
from ..db import DATABASE_ERRORS, prepared_rows
from ..models import DeadLetter, MessageAttempt
from ..publishing import broker
from ..telemetry import counters

logger = logging.getLogger(__name__)


def record_failure(task_id: str, error: str) -> None:
    """Remember why the message failed (kept as its dead letter's reason if it is parked)."""
    MessageAttempt.objects.update_or_create(
        task_id=task_id, defaults={"last_error": error[:2000], "updated_at": timezone.now()}
    )


def parked(task_name: str, task_id: str, args: list[Any], *, redelivered: bool) -> bool:
    """For a message the broker delivers again: count the delivery, and park it (True: do not run
    it, acknowledge it) once it reached OBSERVERS_MAX_DELIVERIES. A database that cannot count it
    now does not park it (the message then meets the same database and is retried)."""
    if not redelivered:
        return False
    try:
        deliveries = _count_delivery(task_id)
        if deliveries <= conf.max_deliveries():
            return False
        _park(task_name, task_id, args, deliveries)
    except DATABASE_ERRORS:
        logger.warning("event=delivery_not_counted task=%s id=%s", task_name, task_id, exc_info=True)
        return False
    return True


def _count_delivery(task_id: str) -> int:
    """One more delivery, in one statement; a message first seen redelivered is at its second."""
    table = MessageAttempt._meta.db_table  # a model constant, never data
    sql = (
        f"INSERT INTO {table} (task_id, deliveries, last_error, updated_at) VALUES (%s, 2, '', %s) "  # noqa: S608
        f"ON CONFLICT (task_id) DO UPDATE SET deliveries = {table}.deliveries + 1, "
        "updated_at = excluded.updated_at RETURNING deliveries"
    )
    [(deliveries,)] = prepared_rows(
        connection, sql, [task_id, connection.ops.adapt_datetimefield_value(timezone.now())]
    )
    return int(deliveries)


def _park(task_name: str, task_id: str, args: list[Any], deliveries: int) -> None:
    with transaction.atomic():
        attempt = MessageAttempt.objects.filter(task_id=task_id).first()
        reason = (attempt.last_error if attempt else "") or "its worker process died running it"
        DeadLetter.objects.create(
            task_id=task_id, task=task_name, args=json.dumps(args), deliveries=deliveries - 1, reason=reason
        )
        MessageAttempt.objects.filter(task_id=task_id).delete()
        counters.increment({"messages_parked": 1})
    logger.error(
        "event=message_parked task=%s id=%s deliveries=%d reason=%r",
        task_name,
        task_id,
        deliveries - 1,
        reason,
    )


def replay_dead_letters(ids: list[int] | None = None, *, limit: int = 1000) -> int:
    """Publish dead letters again (``ids``, or the oldest ``limit``), with confirms, and delete them;
    returns how many. A replayed message is a new message: it gets OBSERVERS_MAX_DELIVERIES again."""
    with transaction.atomic():
        letters = DeadLetter.objects.select_for_update(skip_locked=True).order_by("parked_at", "id")
        if ids is not None:
            letters = letters.filter(id__in=ids)
        rows = list(letters.values_list("id", "task", "args")[:limit])
        broker.publish_confirmed([(task, args) for _, task, args in rows])
        DeadLetter.objects.filter(id__in=[pk for pk, _, _ in rows]).delete()
        counters.increment({"messages_replayed": len(rows)})
    if rows:
        logger.warning("event=dead_letters_replayed messages=%d", len(rows))
    return len(rows)


areplay_dead_letters = aio.async_twin(replay_dead_letters)


def prune_attempts(*, older_than: timedelta = timedelta(days=1)) -> int:
    """Forget delivery counts of messages not seen for a day (they finished, or were parked)."""
    deleted, _ = MessageAttempt.objects.filter(updated_at__lt=timezone.now() - older_than).delete()
    return deleted

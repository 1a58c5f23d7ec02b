"""Poison messages: a dispatch, deliver or webhook message that fails by itself (it raises every time,
or kills the process running it) is parked as a dead letter after OBSERVERS_MAX_DELIVERIES failed
runs, counted, and replayable once the cause is fixed.

A message that fails is requeued (not dropped) and its failed run counted here by its task id; so is a
run whose worker process died. A message the hub's own faults held back (the database or the broker
away, a full queue: ``worker.retrying``) or the broker redelivered after a lost connection is not
counted: it carries nothing wrong. A redelivered message costs one read; one that succeeds the first
time costs nothing.
"""

import json
import logging
from datetime import timedelta
from typing import Any

from django.db import connection, connections, transaction
from django.utils import timezone

from .. import aio, conf, validation
from ..db import DATABASE_ERRORS, prepared_rows
from ..models import DeadLetter, MessageAttempt
from ..publishing import broker
from ..telemetry import counters

logger = logging.getLogger(__name__)

DIED = "its worker process died running it"


def record_failure(task_id: str, error: str) -> None:
    """Count a run of the message that failed by itself, and why (its dead letter's reason if parked)."""
    record_failures([task_id], error)


def record_failures(task_ids: list[str], error: str) -> None:
    """Count a failed run of each message, in one statement."""
    table = MessageAttempt._meta.db_table  # a model constant, never data
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    error = validation.storable_text(error)
    rows = ", ".join(["(%s, 1, %s, %s)"] * len(task_ids))
    prepared_rows(
        connection,
        f"INSERT INTO {table} (task_id, deliveries, last_error, updated_at) VALUES {rows} "  # noqa: S608
        f"ON CONFLICT (task_id) DO UPDATE SET deliveries = {table}.deliveries + 1, "
        "last_error = excluded.last_error, updated_at = excluded.updated_at",
        [value for task_id in sorted(task_ids) for value in (task_id, error, now)],
    )


def record_deaths(task_ids: list[str], error: str) -> None:
    """Count a run whose worker process died, from the worker's main process, which starts no thread
    (it forks): one statement on a connection closed right after; a database away is logged."""
    try:
        record_failures(task_ids, f"{DIED} ({error})")
    except Exception:
        logger.warning("event=death_not_recorded ids=%s", task_ids, exc_info=True)
    finally:
        connections.close_all()


def parked(task_name: str, task_id: str, args: list[Any], *, redelivered: bool) -> bool:
    """For a message the broker delivers again: park it (True: do not run it, acknowledge it) once it
    failed by itself OBSERVERS_MAX_DELIVERIES times. A database that cannot tell now does not park it
    (the message then meets the same database, and waits for it)."""
    if not redelivered:
        return False
    try:
        failed = MessageAttempt.objects.filter(task_id=task_id).values_list("deliveries", flat=True).first()
        if failed is None or failed < conf.max_deliveries():
            return False
        _park(task_name, task_id, args)
    except DATABASE_ERRORS:
        logger.warning("event=failures_not_read task=%s id=%s", task_name, task_id, exc_info=True)
        return False
    return True


def _park(task_name: str, task_id: str, args: list[Any]) -> None:
    with transaction.atomic():
        attempt = MessageAttempt.objects.select_for_update().filter(task_id=task_id).first()
        if attempt is None:  # parked by another worker meanwhile
            return
        reason = attempt.last_error or DIED
        DeadLetter.objects.create(
            task_id=task_id,
            task=task_name,
            args=json.dumps(args),
            deliveries=attempt.deliveries,
            reason=reason,
        )
        attempt.delete()
        counters.increment({"messages_parked": 1})
    logger.error(
        "event=message_parked task=%s id=%s failed_runs=%d reason=%r",
        task_name,
        task_id,
        attempt.deliveries,
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

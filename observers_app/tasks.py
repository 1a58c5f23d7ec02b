"""Thin Celery tasks: fan a batch of notifications out, deliver one page of observers, sweep dead owners."""

import functools
import logging
import time
from typing import Any

from celery import shared_task
from django.db import close_old_connections

from . import delivery, manager, payloads, validation, wiring
from .batching import DONE, RETRY, BatchedTask
from .db import DATABASE_ERRORS
from .dispatch import fan_out
from .exceptions import InvalidMessage

logger = logging.getLogger(__name__)

# Before a dispatch batch that met a database error is redelivered.
DATABASE_RETRY_DELAY_S = 1.0

# The hub's message tasks: acked after they ran, redelivered if their process dies, and retried with
# backoff when the database drops a connection or restarts (anything else is not retried).
hub_task = functools.partial(
    shared_task,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=DATABASE_ERRORS,
    retry_backoff=True,
    max_retries=5,
)


# typing=False: a message carries one notification's args; the function gets a batch of them.
@shared_task(base=BatchedTask, name=wiring.DISPATCH_TASK, acks_late=True, ignore_result=True, typing=False)
def dispatch(args_list: list[list[Any]]) -> list[str]:
    """Fan out a batch of dispatch messages, each ``[var_id, old_value, new_value, metadata,
    notification_id, notified_at]`` and an optional ``seq``; returns each message's outcome. A
    malformed message fails alone. When the database goes away, the messages not yet delivered wait
    a moment and are redelivered."""
    close_old_connections()
    parsed = [_parse(args) for args in args_list]
    notifications = [notification for notification in parsed if isinstance(notification, dict)]
    outcomes: list[str] = []
    try:
        for error in fan_out(notifications):
            outcomes.append(error or DONE)
    except DATABASE_ERRORS:
        logger.warning(
            "event=dispatch_retry messages=%d reason=database",
            len(notifications) - len(outcomes),
            exc_info=True,
        )
        close_old_connections()
        time.sleep(DATABASE_RETRY_DELAY_S)
    fanned = iter(outcomes + [RETRY] * (len(notifications) - len(outcomes)))
    return [next(fanned) if isinstance(one, dict) else one for one in parsed]


def _parse(args: Any) -> dict[str, Any] | str:
    """The message's notification, or its error: a malformed message must not fail its batch."""
    try:
        return validation.dispatch_notification(args)
    except InvalidMessage as exc:
        logger.error("event=dispatch_failed error=%r", str(exc))
        return f"InvalidMessage: {exc}"


@hub_task(name=wiring.DELIVER_TASK)
def deliver(notification: dict[str, Any], after: str | None, upto: str, globs: list[str]) -> None:
    """One page of a fan-out: its message carries a reference to the stored notification
    (``{"payload": id, "notification_id": ...}``), or, sent by an earlier version, the notification."""
    if "payload" in notification:
        payloads.deliver_page(notification["payload"], after=after, upto=upto, globs=globs)
    else:
        delivery.deliver(notification, after=after, upto=upto, globs=globs)


@shared_task(name=wiring.SWEEP_TASK, ignore_result=True)
def sweep() -> dict[str, int]:
    return manager.sweep()

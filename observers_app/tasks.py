"""Thin Celery tasks: fan a batch of notifications out, deliver one page of observers, POST a webhook,
sweep dead owners."""

import functools
import logging
import time
from typing import Any

from celery import shared_task
from django.db import close_old_connections

from . import delivery, manager, wiring
from .batching import DONE, RETRY, BatchedTask
from .db import DATABASE_ERRORS
from .dispatch import fan_out
from .webhooks import attempts

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
    notification_id, notified_at]`` and an optional ``seq``; returns each message's outcome. When the
    database goes away, the messages not yet delivered wait a moment and are redelivered."""
    close_old_connections()
    outcomes: list[str] = []
    try:
        for error in fan_out([_notification(*args) for args in args_list]):
            outcomes.append(error or DONE)
    except DATABASE_ERRORS:
        logger.warning(
            "event=dispatch_retry messages=%d reason=database", len(args_list) - len(outcomes), exc_info=True
        )
        close_old_connections()
        time.sleep(DATABASE_RETRY_DELAY_S)
    return outcomes + [RETRY] * (len(args_list) - len(outcomes))


def _notification(
    var_id: str,
    old_value: Any,
    new_value: Any,
    metadata: dict[str, Any] | None,
    notification_id: str,
    notified_at: float,
    seq: int | None = None,
) -> dict[str, Any]:
    return {
        "var_id": var_id,
        "old_value": old_value,
        "new_value": new_value,
        "metadata": metadata,
        "notification_id": notification_id,
        "seq": seq,
        "notified_at": notified_at,
    }


@hub_task(name=wiring.DELIVER_TASK)
def deliver(notification: dict[str, Any], after: str | None, upto: str, globs: list[str]) -> None:
    delivery.deliver(notification, after=after, upto=upto, globs=globs)


@hub_task(name=wiring.WEBHOOK_TASK)
def deliver_webhook(observer_ref: str, message_id: str, payload: str, attempt: int) -> str:
    """One attempt at a webhook message; the retry schedule (with 429's Retry-After) lives in
    webhooks.attempts, which sends the next attempt as a task of its own, never a sleep."""
    return attempts.deliver(observer_ref, message_id, payload, attempt)


@shared_task(name=wiring.SWEEP_TASK, ignore_result=True)
def sweep() -> dict[str, int]:
    return manager.sweep()

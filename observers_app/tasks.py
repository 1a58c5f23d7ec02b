"""Thin Celery tasks: fan a batch of notifications out, deliver one page of observers, POST a webhook,
sweep dead owners."""

import functools
import logging
import time
from typing import Any

from celery import Task, shared_task
from celery.exceptions import Reject
from django.db import close_old_connections

from . import validation, wiring
from .db import DATABASE_ERRORS
from .exceptions import BrokerUnavailable, InvalidMessage
from .upkeep import sweep as upkeep
from .webhooks import attempts
from .worker import delivery, pages, poison
from .worker.batching import DONE, RETRY, BatchedTask
from .worker.dispatch import RETRIED_ERRORS, fan_out

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


class PoisonAwareBatchedTask(BatchedTask):
    """A failing dispatch message is delivered again until poison.parked() parks it."""

    def parked(self, task_id: str, args: list[Any], redelivered: bool) -> bool:
        return poison.parked(self.name, task_id, args, redelivered=redelivered)

    def failed(self, task_id: str, error: str) -> None:
        try:
            poison.record_failure(task_id, error)
        except DATABASE_ERRORS:
            logger.warning("event=failure_not_recorded id=%s", task_id, exc_info=True)


# typing=False: a message carries one notification's args; the function gets a batch of them.
@shared_task(
    base=PoisonAwareBatchedTask,
    name=wiring.DISPATCH_TASK,
    acks_late=True,
    ignore_result=True,
    typing=False,
)
def dispatch(args_list: list[list[Any]]) -> list[str]:
    """Fan out a batch of dispatch messages, each ``[var_id, old_value, new_value, metadata,
    notification_id, notified_at]`` and an optional ``seq``; returns each message's outcome. A
    malformed message fails alone (and is parked after OBSERVERS_MAX_DELIVERIES). When the database
    or the broker goes away, the messages not yet delivered wait a moment and are redelivered."""
    close_old_connections()
    outcomes: list[str] = [RETRY] * len(args_list)
    readable: list[int] = []
    notifications = []
    for index, args in enumerate(args_list):
        parsed = _parse(args)
        if isinstance(parsed, str):
            outcomes[index] = parsed
        else:
            notifications.append(parsed)
            readable.append(index)
    done = 0
    try:
        for error in fan_out(notifications):
            outcomes[readable[done]] = error or DONE
            done += 1
    except RETRIED_ERRORS as exc:
        logger.warning(
            "event=dispatch_retry messages=%d reason=%s",
            len(readable) - done,
            "broker" if isinstance(exc, BrokerUnavailable) else "database",
            exc_info=True,
        )
        close_old_connections()
        time.sleep(DATABASE_RETRY_DELAY_S)
    return outcomes


def _parse(args: Any) -> dict[str, Any] | str:
    """The message's notification, or its error: a malformed message must not fail its batch."""
    try:
        return validation.dispatch_notification(args)
    except InvalidMessage as exc:
        logger.error("event=dispatch_failed error=%r", str(exc))
        return f"InvalidMessage: {exc}"


@hub_task(name=wiring.DELIVER_TASK, bind=True)
def deliver(self: Task, notification: dict[str, Any], after: str | None, upto: str, globs: list[str]) -> None:
    """Deliver one page; a page that fails is delivered again until poison.parked() parks it. Its
    message carries a reference to the stored notification (``{"payload": id, "notification_id":
    ...}``), or, sent by an earlier version, the notification."""
    args = [notification, after, upto, globs]
    task_id = str(self.request.id)
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    if poison.parked(self.name, task_id, args, redelivered=redelivered):
        return
    try:
        if "payload" in notification:
            pages.deliver_page(notification["payload"], after=after, upto=upto, globs=globs)
        else:
            delivery.deliver(notification, after=after, upto=upto, globs=globs)
    except DATABASE_ERRORS:
        raise  # retried with backoff (autoretry_for)
    except Exception as exc:
        poison.record_failure(task_id, f"{type(exc).__name__}: {exc}")
        raise Reject(exc, requeue=True) from exc


@hub_task(name=wiring.WEBHOOK_TASK)
def deliver_webhook(observer_ref: str, message_id: str, payload: str, attempt: int) -> str:
    """One attempt at a webhook message; the retry schedule (with 429's Retry-After) lives in
    webhooks.attempts, which sends the next attempt as a task of its own, never a sleep."""
    return attempts.deliver(observer_ref, message_id, payload, attempt)


@shared_task(name=wiring.SWEEP_TASK, ignore_result=True)
def sweep() -> dict[str, int]:
    return upkeep.sweep()

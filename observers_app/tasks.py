"""Thin Celery tasks: fan a batch of notifications out, deliver one page of observers, POST a webhook,
replay a run of history to one observer, sweep dead owners."""

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Task, shared_task
from celery.exceptions import Reject
from django.db import close_old_connections

from . import validation, wiring
from .db import DATABASE_ERRORS
from .exceptions import BrokerUnavailable, InvalidMessage
from .upkeep import sweep as upkeep
from .webhooks import attempts
from .worker import delivery, pages, poison, replaying, retrying
from .worker.batching import DONE, RETRY, BatchedTask
from .worker.dispatch import RETRIED_ERRORS, fan_out

T = TypeVar("T")
logger = logging.getLogger(__name__)

# The hub's message tasks: acked after they ran, redelivered if their process dies; a transient fault
# (the database or the broker away) is held and retried for as long as it lasts (worker.retrying),
# any other error counts against the message until it is parked (worker.poison).
hub_task = functools.partial(
    shared_task,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    Request="observers_app.worker.retrying:HubRequest",
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

    def died(self, task_ids: list[str], error: str) -> None:
        poison.record_deaths(task_ids, error)


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
    or the broker goes away, the messages not yet delivered wait and are redelivered (RETRY)."""
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
        retrying.counted(len(readable) - done)
    return outcomes


def _parse(args: Any) -> dict[str, Any] | str:
    """The message's notification, or its error: a malformed message must not fail its batch."""
    try:
        return validation.dispatch_notification(args)
    except InvalidMessage as exc:
        logger.error("event=dispatch_failed error=%r", str(exc))
        return f"InvalidMessage: {exc}"


def _run_message(task: Task, args: list[Any], run: Callable[[], T]) -> T | None:
    """Run one deliver or webhook message: not at all once it was parked; a transient fault waits and
    comes again (worker.retrying); any other error counts against it (worker.poison) and requeues it."""
    task_id = str(task.request.id)
    redelivered = bool((task.request.delivery_info or {}).get("redelivered"))
    try:
        if poison.parked(task.name, task_id, args, redelivered=redelivered):
            return None
        return run()
    except RETRIED_ERRORS as exc:
        logger.warning("event=message_retry task=%s id=%s error=%r", task.name, task_id, exc)
        close_old_connections()
        raise retrying.transient(exc) from exc
    except Exception as exc:
        try:
            poison.record_failure(task_id, f"{type(exc).__name__}: {exc}")
        except DATABASE_ERRORS as database_error:
            raise retrying.transient(database_error) from exc
        raise Reject(exc, requeue=True) from exc


@hub_task(name=wiring.DELIVER_TASK, bind=True)
def deliver(self: Task, notification: dict[str, Any], after: str | None, upto: str, globs: list[str]) -> None:
    """Deliver one page. Its message carries the notification, or for a large one a reference to it
    stored (``{"payload": id, "notification_id": ...}``)."""

    def run() -> None:
        if "payload" in notification:
            pages.deliver_page(notification["payload"], after=after, upto=upto, globs=globs)
        else:
            delivery.deliver(notification, after=after, upto=upto, globs=globs)

    _run_message(self, [notification, after, upto, globs], run)


@hub_task(name=wiring.WEBHOOK_TASK, bind=True)
def deliver_webhook(self: Task, observer_ref: str, message_id: str, payload: str, attempt: int) -> str | None:
    """One attempt at a webhook message; the retry schedule (with 429's Retry-After) lives in
    webhooks.attempts, which sends the next attempt as a message of its own, never a sleep."""
    return _run_message(
        self,
        [observer_ref, message_id, payload, attempt],
        lambda: attempts.deliver(observer_ref, message_id, payload, attempt),
    )


@hub_task(name=wiring.REPLAY_TASK, bind=True)
def replay(self: Task, observer_ref: str, var_id: str, first: int, last: int) -> int | None:
    """Deliver one run of a variable's kept history to one observer (``manager.replay``)."""
    return _run_message(
        self,
        [observer_ref, var_id, first, last],
        lambda: replaying.replay_run(observer_ref, var_id, first, last),
    )


@shared_task(name=wiring.SWEEP_TASK, ignore_result=True)
def sweep() -> dict[str, int]:
    return upkeep.sweep()

"""Thin Celery tasks: fan one notification out, deliver one page of observers, sweep dead owners."""

import functools
from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from . import fanout, manager

# The hub's message tasks: acked after they ran, redelivered if their process dies, and retried with
# backoff when the database drops a connection or restarts (anything else is not retried).
hub_task = functools.partial(
    shared_task,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=5,
)


@hub_task(name=fanout.DISPATCH_TASK)
def dispatch(
    var_id: str,
    old_value: Any,
    new_value: Any,
    metadata: dict[str, Any] | None,
    notification_id: str,
    notified_at: float,
    seq: int | None = None,
) -> None:
    fanout.fan_out(
        var_id=var_id,
        old_value=old_value,
        new_value=new_value,
        metadata=metadata,
        notification_id=notification_id,
        notified_at=notified_at,
        seq=seq,
    )


@hub_task(name=fanout.DELIVER_TASK)
def deliver(notification: dict[str, Any], after: str | None, upto: str, globs: list[str]) -> None:
    fanout.deliver(notification, after=after, upto=upto, globs=globs)


@shared_task(name="observers.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    return manager.sweep()

"""Thin Celery tasks: fan one notification out, deliver one page of observers, sweep dead owners."""

from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from . import fanout, manager

# A database that drops a connection or restarts: retried with backoff; anything else is not.
DATABASE_HICCUPS = (OperationalError, InterfaceError)


@shared_task(
    name=fanout.DISPATCH_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=DATABASE_HICCUPS,
    retry_backoff=True,
    max_retries=5,
)
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


@shared_task(
    name=fanout.DELIVER_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=DATABASE_HICCUPS,
    retry_backoff=True,
    max_retries=5,
)
def deliver(notification: dict[str, Any], after: str | None, upto: str, globs: list[str]) -> None:
    fanout.deliver(notification, after=after, upto=upto, globs=globs)


@shared_task(name="observers.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    return manager.sweep()

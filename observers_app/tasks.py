"""Thin Celery tasks: the fan-out of one notification, and the delivery of one page of observers."""

from typing import Any

from celery import shared_task

from . import manager


@shared_task(name=manager.DISPATCH_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def dispatch(
    var_id: str,
    old_value: Any,
    new_value: Any,
    metadata: dict[str, Any] | None,
    notification_id: str,
    notified_at: float,
) -> None:
    manager.fan_out(
        var_id=var_id,
        old_value=old_value,
        new_value=new_value,
        metadata=metadata,
        notification_id=notification_id,
        notified_at=notified_at,
    )


@shared_task(name=manager.DELIVER_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver(notification: dict[str, Any], after: str | None, upto: str) -> None:
    manager.deliver(notification, after=after, upto=upto)

"""Thin Celery tasks: fan one notification out, deliver one page of observers, sweep dead owners."""

from typing import Any

from celery import shared_task

from . import fanout, manager


@shared_task(name=fanout.DISPATCH_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
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


@shared_task(name=fanout.DELIVER_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver(notification: dict[str, Any], after: str | None, upto: str, globs: list[str]) -> None:
    fanout.deliver(notification, after=after, upto=upto, globs=globs)


@shared_task(name="observers.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    return manager.sweep()

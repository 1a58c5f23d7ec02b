"""The bounded dispatch queue: how deep it is, and counting what it shed so nothing goes silently."""

from typing import Any

from celery import current_app
from django.conf import settings
from kombu import Queue

from . import counters


def _shed_queue() -> Queue:
    quorum = {"x-queue-type": "quorum"} if settings.OBSERVERS_QUORUM_QUEUES else {}
    return Queue(settings.OBSERVERS_SHED_QUEUE, durable=True, queue_arguments=quorum)


def drain_shed(*, limit: int = 100_000) -> int:
    """Count and remove (at most ``limit``) notifications the full dispatch queue dropped."""
    shed = 0
    with current_app.connection_for_write() as connection:
        queue = _shed_queue()(connection.default_channel)
        queue.declare()
        while shed < limit and (message := queue.get(no_ack=False)) is not None:
            message.ack()
            shed += 1
    counters.increment({"notifications_shed": shed})
    return shed


def dispatch_backlog() -> int:
    """Notifications waiting in the dispatch queue now, or -1 if the broker cannot say."""
    try:
        with current_app.connection_for_write() as connection:
            channel: Any = connection.default_channel
            return int(channel.queue_declare(current_app.conf.task_default_queue, passive=True).message_count)
    except Exception:
        return -1


def declare_queues() -> None:
    """Declare the hub's queues (dispatch, deliver and shed) as configured."""
    with current_app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in (*current_app.amqp.queues.values(), _shed_queue()):
            queue(channel).declare()


def delete_queues() -> None:
    """Delete the hub's queues and their messages: for tests and benchmarks, and before changing the
    queue arguments (RabbitMQ refuses to redeclare a queue with other arguments)."""
    with current_app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in (*current_app.amqp.queues.values(), _shed_queue()):
            queue(channel).delete()

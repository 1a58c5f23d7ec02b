"""The bounded dispatch queue: its queues declared, and what it shed counted so nothing goes silently."""

from typing import Any

from celery import current_app

from .. import wiring
from ..telemetry import counters


def drain_shed(*, limit: int = 100_000) -> int:
    """Count and remove (at most ``limit``) notifications the full dispatch queue dropped."""
    shed = 0
    with current_app.connection_for_write() as connection:
        queue = wiring.shed_queue()(connection.default_channel)
        queue.declare()
        while shed < limit and (message := queue.get(no_ack=False)) is not None:
            message.ack()
            shed += 1
    counters.increment({"notifications_shed": shed})
    return shed


def _hub_queues() -> tuple[Any, ...]:
    return (*wiring.consumed_queues(), wiring.shed_queue())


def declare_queues() -> None:
    """Declare the hub's queues (dispatch, deliver and shed) as configured."""
    with current_app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in _hub_queues():
            queue(channel).declare()


def delete_queues() -> None:
    """Delete the hub's queues and their messages: for tests and benchmarks, and before changing the
    queue arguments (RabbitMQ refuses to redeclare a queue with other arguments)."""
    with current_app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in _hub_queues():
            queue(channel).delete()

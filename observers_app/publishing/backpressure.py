"""The bounded dispatch queue: its queues declared, and what it shed counted so nothing goes silently.

The dispatch queue drops its oldest into the shed queue, which every worker empties every second
(``upkeep.ticker``) and the sweep too, counting what it held in one purge. The shed queue is bounded
itself, for a time no worker runs: what it drops past its bound, the broker does not report.
"""

import logging
from typing import Any

from amqp.exceptions import PreconditionFailed
from celery import current_app

from .. import conf, wiring
from ..exceptions import BrokerUnavailable
from ..telemetry import counters
from . import broker

logger = logging.getLogger(__name__)


def drain_shed() -> int:
    """Count and remove what the full dispatch queue dropped, however many, in one purge."""
    queue = wiring.shed_queue()
    try:
        shed = broker.purge(queue)
    except BrokerUnavailable as exc:
        if not isinstance(exc.__cause__, PreconditionFailed):
            raise
        # Declared by an earlier version, without its bound: counted, deleted and declared again.
        shed = broker.purge(queue, declared_otherwise=True)
    if shed >= conf.shed_queue_max_length():
        logger.error(
            "event=shed_queue_full max=%d: what the dispatch queue shed past it was dropped uncounted",
            conf.shed_queue_max_length(),
        )
        counters.increment({"shed_queue_full": 1})
    if shed:
        logger.warning("event=notifications_shed count=%d", shed)
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

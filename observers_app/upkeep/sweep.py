"""The periodic sweep, run by beat: every upkeep step of the hub, in one place."""

import logging

from .. import aio, conf
from ..exceptions import BrokerUnavailable
from ..owners.reaping import sweep_dead_observers
from ..publishing import backpressure, outbox
from ..webhooks import attempts
from ..worker import coalescing, poison
from . import pruning

logger = logging.getLogger(__name__)


def sweep(*, batch_size: int | None = None) -> dict[str, int]:
    """The periodic sweep: dead owners and their observers, the count of shed notifications,
    coalescing mailboxes whose delivering worker died, durable notifications their callers left
    unpublished (workers publish them too), webhook retries now due, and the rows nobody needs any
    more (see ``pruning``)."""
    batch_size = batch_size or conf.sweep_batch_size()
    return {
        **sweep_dead_observers(batch_size=batch_size),
        "outbox_republished": outbox.publish_stale(),
        "attempts_pruned": poison.prune_attempts(),
        "notifications_shed": _drain_shed(),
        "coalescing_resumed": coalescing.resume_stalled(),
        **pruning.prune(batch_size),
        "webhook_retries_sent": attempts.release_due_retries(batch_size=batch_size),
    }


asweep = aio.async_twin(sweep)


def _drain_shed() -> int:
    """What the dispatch queue shed, counted; 0 while the broker is away (the workers count it every
    second), so that the other steps run regardless."""
    try:
        return backpressure.drain_shed()
    except BrokerUnavailable:
        logger.warning("event=shed_not_counted reason=broker", exc_info=True)
        return 0

"""Transient faults: a message that met the database or the broker away waits in the worker's main
process and is delivered again, with capped backoff, for as long as the fault lasts.

Never acknowledged meanwhile, so no outage turns into a loss, and never counted as poison: a message
is parked for what it carries (``worker.poison``), not for the hub's faults. While it waits the worker
takes one more message from the broker in its place (as Celery does for a task with an ETA), so held
messages do not stop the worker's other work; they wait well under RabbitMQ's consumer timeout.
"""

import logging
import random
from collections import OrderedDict
from typing import Any

from billiard.einfo import ExceptionWithTraceback  # type: ignore[attr-defined]
from celery.exceptions import Reject, TimeLimitExceeded, WorkerLostError
from celery.signals import worker_ready
from celery.worker.request import Request
from celery.worker.state import task_ready

from ..exceptions import TransientFault
from ..telemetry import counters
from . import poison

logger = logging.getLogger(__name__)

# The first wait, and the longest: the waits double in between.
FIRST_DELAY_S = 1.0
MAX_DELAY_S = 10.0
# Messages whose retries are remembered (for their backoff); past it the oldest are forgotten.
REMEMBERED = 10_000
# Held messages the worker takes another message for; past it, the held ones fill its prefetch window
# (the fault is everywhere then: nothing else would run either).
EXTRA_PREFETCH_MAX = 1000

_consumer: Any = None  # the worker's consumer (its timer and prefetch), from worker_ready
_retries: "OrderedDict[str, int]" = OrderedDict()  # in the main process's one thread, its event loop
_extra_prefetch = 0


def transient(exc: BaseException) -> Reject:
    """What a hub task raises, in its pool process, when ``exc`` is a transient fault: a requeue (at
    once, if the task's request is not a HubRequest), which a HubRequest holds back first. Counted."""
    counted(1)
    return Reject(TransientFault(f"{type(exc).__name__}: {exc}"), requeue=True)


def counted(messages: int) -> None:
    """Count messages retried for a transient fault, in the pool process (the main process forks: no
    thread of the hub's there), written once the database takes it."""
    counters.increment_later({"messages_retried": messages})


def requeue_later(request: Any) -> None:
    """Hold ``request``'s message, then requeue it: after 1 s, then 2, 4 ... at most MAX_DELAY_S for
    the same message. In the worker's main process."""
    global _extra_prefetch
    retries = _retries.pop(request.id, 0) + 1
    _retries[request.id] = retries
    while len(_retries) > REMEMBERED:
        _retries.popitem(last=False)
    delay = min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** (retries - 1)) * random.uniform(0.8, 1.0)  # noqa: S311
    consumer = _consumer
    if consumer is None or consumer.timer is None or consumer.qos is None:
        request.reject(requeue=True)  # not in a worker with a timer: no way to wait here
        return
    qos, extra = consumer.qos, _extra_prefetch < EXTRA_PREFETCH_MAX
    if extra:
        _extra_prefetch += 1
        qos.increment_eventually()
    consumer.timer.call_after(delay, _requeue, (request, qos, extra))


def _requeue(request: Any, qos: Any, extra: bool) -> None:
    global _extra_prefetch
    if extra:
        _extra_prefetch -= 1
        qos.decrement_eventually()  # the prefetch of the connection it was taken on (a new one has its own)
    try:
        request.reject(requeue=True)
    except Exception:  # its channel is gone with a lost connection: the broker delivers it again anyway
        logger.warning("event=requeue_failed id=%s", request.id, exc_info=True)


def forget(task_id: str) -> None:
    """The message finished: its next fault starts its backoff afresh."""
    _retries.pop(task_id, None)


class HubRequest(Request):
    """The request of the hub's deliver and webhook tasks: a transient fault is held, then requeued;
    a pool process that died (or was killed past a time limit) running it counts against the message
    (worker.poison) and has it delivered again."""

    def on_success(self, failed__retval__runtime: Any, **kwargs: Any) -> Any:
        if not failed__retval__runtime[0]:
            forget(self.id)
        return super().on_success(failed__retval__runtime, **kwargs)

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> Any:
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        if isinstance(exc, Reject) and isinstance(getattr(exc, "reason", None), TransientFault):
            task_ready(self)
            requeue_later(self)
            return None
        cancelled = getattr(self, "_already_cancelled", False) or getattr(self, "_already_revoked", False)
        if isinstance(exc, WorkerLostError | SystemExit | TimeLimitExceeded) and not cancelled:
            poison.record_deaths([self.id], f"{type(exc).__name__}: {exc}")
        if isinstance(exc, TimeLimitExceeded):  # acknowledged by default (acks_on_failure_or_timeout)
            task_ready(self)
            self.reject(requeue=True)
            return None
        return super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)


def _remember_consumer(sender: Any = None, **kwargs: Any) -> None:
    global _consumer
    _consumer = sender


def connect() -> None:
    """Hold messages in the worker's main process once it runs (called once, from ``AppConfig.ready()``)."""
    worker_ready.connect(_remember_consumer, weak=False)

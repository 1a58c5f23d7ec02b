"""The worker's ticker: every second, publish what waits in the outbox table (durable notifications
their callers left, messages the broker refused) and count what the dispatch queue shed. In each pool
process of a prefork worker (its main process forks replacements for them: a thread there would be
inherited half-way by each), in the worker itself otherwise. No extra process to run."""

import logging
import threading
from typing import Any

from celery.signals import worker_process_init, worker_process_shutdown, worker_ready, worker_shutdown
from django.db import connections

from ..publishing import backpressure, outbox

logger = logging.getLogger(__name__)

TICK_S = 1.0


class _Ticker(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="observers-ticker", daemon=True)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(TICK_S):
            for step in (outbox.publish_stale, backpressure.drain_shed):
                try:
                    step()
                except Exception:  # the database or the broker away: the next tick tries again
                    logger.warning(
                        "event=tick_failed step=%s retry_in_s=%s", step.__name__, TICK_S, exc_info=True
                    )
                    connections.close_all()
        connections.close_all()


_ticker: _Ticker | None = None


def connect() -> None:
    """Tick in every worker while it runs (called once, from ``AppConfig.ready()``)."""
    worker_process_init.connect(_start, weak=False)
    worker_ready.connect(_start_unless_prefork, weak=False)
    worker_process_shutdown.connect(_stop, weak=False)
    worker_shutdown.connect(_stop, weak=False)


def _start_unless_prefork(sender: Any = None, **kwargs: Any) -> None:
    """At a worker's start: its pool processes tick if it forks them, else it does."""
    if type(getattr(sender, "pool", None)).__module__ != "celery.concurrency.prefork":
        _start()


def _start(**kwargs: Any) -> None:
    global _ticker
    if _ticker is None:
        _ticker = _Ticker()
        _ticker.start()


def _stop(**kwargs: Any) -> None:
    global _ticker
    if _ticker is not None:
        _ticker.stopped.set()
        _ticker = None

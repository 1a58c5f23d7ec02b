"""The worker's ticker: every second, in each worker's main process, publish what waits in the outbox
table (durable notifications their callers left, messages the broker refused) and count what the
dispatch queue shed. No extra process to run."""

import logging
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutdown
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
    """Tick in every worker's main process while it runs (called once, from ``AppConfig.ready()``)."""
    worker_ready.connect(_start, weak=False)
    worker_shutdown.connect(_stop, weak=False)


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

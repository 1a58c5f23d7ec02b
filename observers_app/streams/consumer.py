"""The web process's queue consumer: one thread that hands each notification to the event loop.

One per process at a time (``start_consumer``): its queue is exclusive, so a second consumer of the
same queue would be refused (RESOURCE_LOCKED) as long as the first holds it."""

import json
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from celery import current_app
from kombu import Connection, Queue

from .forwarding import EXCHANGE, queue_name

logger = logging.getLogger(__name__)
RECONNECT_DELAY_S = 1.0
# Seconds a consumer being replaced may take to let its connection go (it checks every second).
STOP_TIMEOUT_S = 5.0


class QueueConsumer(threading.Thread):
    """Consumes ``observers.streams.<owner>``: exclusive and auto-deleted, so it lives exactly as long
    as this process's connection; bound before any observer of the process exists."""

    def __init__(self, owner_id: uuid.UUID, on_message: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(name="observers-streams-consumer", daemon=True)
        self.queue = Queue(
            queue_name(owner_id),
            exchange=EXCHANGE,
            routing_key=str(owner_id),
            exclusive=True,
            auto_delete=True,
            durable=False,
        )
        self.on_message = on_message
        self.ready = threading.Event()
        self.settled = threading.Event()  # ready, or its first attempt failed
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self._consume()
            except Exception:
                # Events published while reconnecting are lost; streams keep running.
                logger.warning("event=stream_consumer_reconnect queue=%s", self.queue.name, exc_info=True)
                self.settled.set()
                self.stopped.wait(RECONNECT_DELAY_S)

    def wait_ready(self, timeout: float) -> bool:
        """Whether the queue is consumed: False as soon as the first attempt fails."""
        self.settled.wait(timeout)
        return self.ready.is_set()

    def _consume(self) -> None:
        with Connection(current_app.conf.broker_url, heartbeat=30) as connection:
            # Two attempts at once, no sleeps: a broker away raises here, and run() retries after
            # RECONNECT_DELAY_S, seeing stop() meanwhile.
            connection.ensure_connection(max_retries=1, interval_start=0)
            consumer = connection.Consumer(
                self.queue, on_message=self._receive, no_ack=True, prefetch_count=1000
            )
            with consumer:
                self.ready.set()
                self.settled.set()
                while not self.stopped.is_set():
                    try:
                        connection.drain_events(timeout=1)
                    except TimeoutError:
                        connection.heartbeat_check()

    def _receive(self, message: Any) -> None:
        try:
            body = json.loads(message.body)
        except ValueError:
            logger.error("event=stream_message_unreadable queue=%s", self.queue.name)
            return
        self.on_message(body)

    def stop(self) -> None:
        self.stopped.set()


_current: QueueConsumer | None = None
_lock = threading.Lock()


def start_consumer(owner_id: uuid.UUID, on_message: Callable[[dict[str, Any]], None]) -> QueueConsumer:
    """Start the process's consumer of ``owner_id``'s queue, after stopping the previous one (a
    fan-out that failed to start, or was retired): never two at once. Blocks while it stops."""
    global _current
    with _lock:
        previous = _current
        if previous is not None:
            previous.stop()
            previous.join(STOP_TIMEOUT_S)
            if previous.is_alive():
                raise RuntimeError("the streams' previous queue consumer has not stopped yet; retry")
        _current = QueueConsumer(owner_id, on_message)
        _current.start()
        return _current

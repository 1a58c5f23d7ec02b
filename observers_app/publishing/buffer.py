"""The process's send buffer: callers leave messages (``send_soon``), one thread publishes them in order.

Not the durable outbox (``publishing.outbox``): what waits here is lost if the process is killed,
unless its outbox row makes it durable.
"""

import atexit
import collections
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, NamedTuple, cast

from celery import current_app
from celery.signals import worker_process_shutdown
from kombu import Queue

from .. import aio, conf, wiring
from ..exceptions import BrokerUnavailable
from . import broker

logger = logging.getLogger(__name__)
# Messages the buffer holds while the broker is unreachable; past it (or past OBSERVERS_SEND_BUFFER_MAX_BYTES
# of them) the oldest are dropped (logged and counted as shed, like the broker's own bound).
BUFFER_MAX = 100_000
# Seconds between attempts while the broker is unreachable, and the wait for the buffer at exit.
RETRY_S = 1.0
EXIT_FLUSH_S = 10.0
# The thread's database session (it deletes the rows of confirmed durable messages) is closed once
# no message came for this long: opened again for every batch, it cost the process and the database
# server more than the deletes.
IDLE_CLOSE_S = 5.0


class _Message(NamedTuple):
    task_name: str
    args_json: str
    durable_id: str | None  # its row in the durable outbox table, deleted once confirmed


class _SendBuffer:
    """Messages on their way to the broker, and the thread that publishes them in order."""

    def __init__(self, *, max_bytes: int | None = None) -> None:
        self.messages: collections.deque[_Message] = collections.deque()
        self.condition = threading.Condition()
        self.sending = 0  # messages the thread took and has not finished with
        self.waiting_bytes = 0  # of the messages waiting
        self.sending_bytes = 0  # of those the thread took
        self.dropped = 0
        self.thread: threading.Thread | None = None
        self._max_bytes = max_bytes

    @property
    def max_bytes(self) -> int:
        if self._max_bytes is None:  # read on first use: the module is imported before settings may be
            self._max_bytes = conf.send_buffer_max_bytes()
        return self._max_bytes

    def held_bytes(self) -> int:
        with self.condition:
            return self.waiting_bytes + self.sending_bytes

    def put(self, message: _Message) -> None:
        with self.condition:
            self.messages.append(message)
            self.waiting_bytes += len(message.args_json)
            self._trim()
            if self.thread is None or not self.thread.is_alive():
                # Celery's current app is per thread: the caller's goes with the thread.
                app = cast(Any, current_app)._get_current_object()  # the proxy's target (untyped)
                thread = threading.Thread(
                    target=self._send_forever, args=(app,), name="observers-sender", daemon=True
                )
                thread.start()
                self.thread = thread
            self.condition.notify_all()

    def _trim(self) -> None:
        """Drop the oldest beyond BUFFER_MAX messages or ``max_bytes`` bytes of them (the caller holds
        the lock). The batch being sent is older than what waits, but may still reach the broker: it
        is not counted until it comes back unsent, in front, where the oldest are dropped. A durable one
        keeps its row: a worker sends it."""
        while self.messages and (len(self.messages) > BUFFER_MAX or self.waiting_bytes > self.max_bytes):
            dropped = self.messages.popleft()
            self.waiting_bytes -= len(dropped.args_json)
            self.dropped += 1

    def _send_forever(self, app: Any) -> None:
        app.set_current()
        while True:
            with self.condition:
                idle = not self.condition.wait_for(lambda: self.messages, IDLE_CLOSE_S)
            if idle:
                # Hold no database session while idle; closed outside the lock, which callers take.
                _close_database_connection()
            with self.condition:
                self.condition.wait_for(lambda: self.messages)
                batch = list(self.messages)
                self.messages.clear()
                self.sending, self.sending_bytes = len(batch), self.waiting_bytes
                self.waiting_bytes = 0
                dropped, self.dropped = self.dropped, 0
            unsent = batch
            try:
                if dropped:
                    _count_dropped(dropped)
                unsent = _send(batch)
            except BaseException:
                logger.exception("event=publish_failed waiting=%d retry_in_s=%s", len(batch), RETRY_S)
            finally:
                with self.condition:
                    if unsent:
                        # Back in front, in order, and tried again (what the broker may hold too is
                        # sent again: at-least-once).
                        self.messages.extendleft(reversed(unsent))
                        self.waiting_bytes += sum(len(message.args_json) for message in unsent)
                    self.sending = self.sending_bytes = 0
                    self._trim()
                    self.condition.notify_all()
            if unsent:
                time.sleep(RETRY_S)

    def flush(self, timeout: float) -> bool:
        """Wait until every message put so far is published; False if ``timeout`` ran out first."""
        deadline = time.monotonic() + timeout
        with self.condition:
            while self.messages or self.sending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.condition.wait(remaining)
        return True


def _send(batch: list[_Message]) -> list[_Message]:
    """Publish the batch with confirms, then delete the durable ones' rows (if that fails, a worker
    publishes them again later: a duplicate, never a loss); returns those the broker did not confirm.
    Durable ones go to the deliver queue, which never sheds: when it is full the broker refuses them,
    and they wait here and in their rows."""
    durable = [message for message in batch if message.durable_id]
    unsent = _publish([message for message in batch if not message.durable_id])
    unsent_durable = _publish(durable, queue=wiring.deliver_queue())
    waiting = {message.durable_id for message in unsent_durable}
    durable_ids = [m.durable_id for m in durable if m.durable_id and m.durable_id not in waiting]
    if durable_ids and _durable_sent is not None:
        try:
            _durable_sent(durable_ids)
        except Exception:
            logger.exception("event=outbox_not_marked_sent messages=%d", len(durable_ids))
    return unsent + unsent_durable


def _publish(messages: list[_Message], *, queue: Queue | None = None) -> list[_Message]:
    """Publish with confirms; returns the messages the broker did not confirm."""
    try:
        broker.publish_confirmed(
            [(message.task_name, message.args_json) for message in messages], queue=queue
        )
    except BrokerUnavailable as exc:
        logger.warning(
            "event=publish_failed waiting=%d retry_in_s=%s error=%s",
            len(messages),
            RETRY_S,
            exc.__cause__ or exc,
        )
        return messages if exc.unsent is None else [messages[position] for position in exc.unsent]
    return []


def _close_database_connection() -> None:
    from django.db import connection

    connection.close()


def _count_dropped(dropped: int) -> None:
    """Never silent: the messages the full buffer dropped are logged and counted as shed."""
    from django.db import connection

    from ..telemetry import counters

    max_bytes = conf.send_buffer_max_bytes()
    logger.error("event=send_buffer_full dropped=%d max=%d max_bytes=%d", dropped, BUFFER_MAX, max_bytes)
    try:
        counters.increment({"notifications_shed": dropped})
    except Exception:
        logger.exception("event=send_buffer_dropped_not_counted dropped=%d", dropped)
    finally:
        connection.close()


_buffer = _SendBuffer()


def _reset_after_fork() -> None:
    # The parent's publishing thread is not running in a forked child.
    global _buffer
    _buffer = _SendBuffer()


# Told the ids of durable messages the broker confirmed (outbox.mark_sent, set by outbox.connect()).
_durable_sent: Callable[[list[str]], None] | None = None


def when_durable_sent(hook: Callable[[list[str]], None]) -> None:
    """Call ``hook`` with the ids of the durable messages each confirmed batch held."""
    global _durable_sent
    _durable_sent = hook


def send_soon(task_name: str, args_json: str, *, durable_id: str | None = None) -> None:
    """Leave a ``task_name`` message for this process's publishing thread and return at once. It is
    published in order after the ones left before it, with publisher confirms; while the broker is
    unreachable it waits (up to BUFFER_MAX messages and OBSERVERS_SEND_BUFFER_MAX_BYTES of them
    besides the batch being sent, the oldest dropped past that; retried every RETRY_S on a rebuilt
    connection), so a message may reach the broker twice (at-least-once,
    like delivery). A message still waiting when the process is killed is lost unless it is durable
    (``durable_id``: its outbox row, which a worker publishes); at a normal exit or SIGTERM the
    buffer is flushed (up to EXIT_FLUSH_S)."""
    _buffer.put(_Message(task_name, args_json, durable_id))


def flush(timeout: float = 10.0) -> bool:
    """Wait until every message this process left with ``send_soon`` is published."""
    return _buffer.flush(timeout)


# Waits on the broker, not the database: on a thread of the loop's pool, leaving Django's sync thread free.
aflush = aio.async_twin(flush, thread_sensitive=False)


def connect() -> None:
    """Flush the buffer at exit, on SIGTERM and when a pool process shuts down (it skips atexit
    hooks), and give a forked child a buffer of its own (called once, from ``AppConfig.ready()``)."""
    os.register_at_fork(after_in_child=_reset_after_fork)
    atexit.register(_flush_at_exit)
    worker_process_shutdown.connect(_flush_in_pool_process, weak=False)
    _flush_on_sigterm()


def _flush_in_pool_process(**kwargs: Any) -> None:
    """A pool process exits without running atexit hooks: publish what its callbacks notified."""
    flush(EXIT_FLUSH_S)


def _flush_at_exit() -> None:
    if not _buffer.flush(EXIT_FLUSH_S):
        with _buffer.condition:
            waiting = len(_buffer.messages) + _buffer.sending
        logger.error("event=send_buffer_not_flushed waiting=%d", waiting)


def _flush_on_sigterm() -> None:
    """A process that leaves SIGTERM to Python's default dies without atexit hooks: make it flush
    the buffer first, then die of the signal as before. Hosts with their own handler (gunicorn,
    Celery, uWSGI) keep it; their clean exit runs atexit."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _flush_and_die)


def _flush_and_die(signum: int, frame: FrameType | None) -> None:
    _flush_at_exit()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)

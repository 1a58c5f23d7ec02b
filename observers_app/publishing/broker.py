"""Publishes Celery task messages straight through kombu, confirmed, recovering from broker faults.

Celery's ``apply_async`` spends more on building each message than the broker on taking it. The
hub's tasks take one JSON array of plain arguments, so the message is protocol 2 built from a
few constants and the arguments the caller already serialized, published on a warm
per-thread link (connection, confirm-mode channel, declared queues) that is rebuilt whole after
any error. Workers see an ordinary Celery task. Callers leave messages to ``buffer.send_soon``.
"""

import contextlib
import json
import os
import threading
import time
import uuid
from typing import Any, cast

from celery import current_app
from celery.events.event import get_exchange
from celery.utils.nodenames import anon_nodename
from celery.utils.time import utcoffset
from kombu import Producer, Queue

from .. import wiring
from ..exceptions import BrokerUnavailable

_EMBED = '{"callbacks": null, "errbacks": null, "chain": null, "chord": null}'
_ARGSREPR_MAX = 256


class _Route:
    """Where a task's messages go, and the headers every one of its messages shares."""

    def __init__(self, task_name: str, queue: Queue) -> None:
        self.queue = queue
        # The worker needs "id" and "task" and defaults every other header; these few are kept
        # for Flower and the logs. py-amqp encodes headers in pure Python: each one costs the caller.
        self.headers: dict[str, Any] = {
            "lang": "py",
            "task": task_name,
            "retries": 0,
            "kwargsrepr": "{}",
            "origin": _origin,
            "ignore_result": True,
        }
        self.sent_event: dict[str, Any] = {
            "type": "task-sent",
            "hostname": _origin,
            "pid": os.getpid(),
            "utcoffset": utcoffset(),
            "name": task_name,
            "parent_id": None,
            "kwargs": "{}",
            "retries": 0,
            "eta": None,
            "expires": None,
            "queue": queue.name,
            "exchange": queue.exchange.name,
            "routing_key": queue.routing_key,
        }


class _Link:
    """One thread's way to the broker: a connection, a channel in confirm mode, its producer, and the
    queues and exchanges declared on that channel. Built on first use; after any error it is dropped
    whole and the next publish builds a new one (a queue object bound to a dead channel stays dead)."""

    def __init__(self) -> None:
        self.connection = current_app.connection_for_write()
        self.connection.connect()
        channel = cast(Any, self.connection.channel())  # py-amqp's Channel (kombu's types: StdChannel)
        channel.confirm_select()
        self.published = self.confirmed = 0
        self.nacked = False
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        self.channel = channel
        self.producer = Producer(self.channel, auto_declare=False)
        self.routes: dict[str, _Route] = {}
        self.event_exchange: Any = None

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self.confirmed = max(self.confirmed, delivery_tag)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self.nacked = True

    def route_for(self, task_name: str) -> _Route:
        route = self.routes.get(task_name)
        if route is None:
            queue = wiring.queue_for(task_name).bind(self.channel)
            queue.declare()
            route = self.routes[task_name] = _Route(task_name, queue)
        return route

    def publish(self, body: str, **kwargs: Any) -> None:
        self.producer.publish(body, content_type="application/json", content_encoding="utf-8", **kwargs)
        self.published += 1

    def wait_for_confirms(self, timeout: float) -> None:
        """Return once the broker confirmed every message published on this channel (persisted, for
        persistent messages on durable queues); raise if it refused one or ``timeout`` ran out."""
        deadline = time.monotonic() + timeout
        while self.confirmed < self.published and not self.nacked:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the broker confirmed {self.confirmed} of {self.published} messages")
            self.connection.drain_events(timeout=remaining)
        if self.nacked:
            raise ConnectionError("the broker refused a message (basic.nack)")

    def drop(self) -> None:
        with contextlib.suppress(Exception):
            # Closes the socket without the Close handshake a dead broker never answers.
            self.connection.collect()


class _ThreadState(threading.local):
    link: _Link | None = None


_state = _ThreadState()
_origin = anon_nodename()


# Messages published before waiting for the broker's confirms, and the longest wait for them.
CONFIRM_CHUNK = 500
CONFIRM_TIMEOUT_S = 10.0


def connect() -> None:
    """Give a forked child its own broker links (called once, from ``AppConfig.ready()``)."""
    os.register_at_fork(after_in_child=_reset_after_fork)


def _reset_after_fork() -> None:
    # A forked child must never share the parent's broker socket.
    global _state, _origin
    _state = _ThreadState()
    _origin = anon_nodename()


def _link() -> _Link:
    if _state.link is None:
        _state.link = _Link()
    return _state.link


def _drop_link() -> None:
    """Forget this thread's broker link after an error: the next publish builds a new one."""
    link, _state.link = _state.link, None
    if link is not None:
        link.drop()


def publish_confirmed(messages: list[tuple[str, str]], *, sent_events: bool = False) -> None:
    """Publish ``(task name, JSON array of its positional arguments)`` messages in order and return
    once the broker confirmed them all. On any error the thread's link is dropped (the next call
    rebuilds it) and the error raised: some of the messages may have reached the broker already, so
    a retry may publish them twice (at-least-once). Raises BrokerUnavailable."""
    if not messages:
        return
    try:
        link = _link()
        for start in range(0, len(messages), CONFIRM_CHUNK):
            for task_name, args_json in messages[start : start + CONFIRM_CHUNK]:
                _publish_task(link, task_name, args_json, sent_event=sent_events)
            link.wait_for_confirms(CONFIRM_TIMEOUT_S)
    except Exception as exc:
        _drop_link()
        raise BrokerUnavailable(f"publishing {len(messages)} messages failed: {exc!r}") from exc
    except BaseException:
        _drop_link()
        raise


def _publish_task(link: _Link, task_name: str, args_json: str, *, sent_event: bool) -> str:
    task_id = str(uuid.uuid4())
    route = link.route_for(task_name)
    headers = {**route.headers, "id": task_id, "root_id": task_id, "argsrepr": args_json[:_ARGSREPR_MAX]}
    link.publish(
        f"[{args_json}, {{}}, {_EMBED}]",
        exchange=route.queue.exchange.name,
        routing_key=route.queue.routing_key,
        headers=headers,
        correlation_id=task_id,
        delivery_mode=2,
    )
    if sent_event and current_app.conf.task_send_sent_event:
        _send_sent_event(link, route, task_id, headers["argsrepr"])
    return task_id


def _send_sent_event(link: _Link, route: _Route, task_id: str, argsrepr: str) -> None:
    """The "task-sent" event Celery's apply_async sends when task_send_sent_event is on (for Flower),
    built from the route's constant fields like the task message, instead of by Celery's dispatcher."""
    if link.event_exchange is None:
        exchange = get_exchange(link.connection, name=current_app.conf.event_exchange).bind(link.channel)
        exchange.declare()
        link.event_exchange = exchange
    event = {
        **route.sent_event,
        "uuid": task_id,
        "root_id": task_id,
        "args": argsrepr,
        "timestamp": time.time(),
        "clock": cast(Any, current_app).clock.forward(),  # the app's logical clock (untyped in celery-types)
    }
    link.publish(
        json.dumps(event),
        exchange=link.event_exchange.name,
        routing_key="task.sent",
        headers={"hostname": _origin},
        delivery_mode=1,
    )

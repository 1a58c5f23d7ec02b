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
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from celery import current_app
from celery.events.event import get_exchange
from celery.utils.nodenames import anon_nodename
from celery.utils.time import utcoffset
from kombu import Exchange, Producer, Queue

from .. import wiring
from ..exceptions import BrokerUnavailable
from . import ids

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
        # A broker out of memory or disk blocks publishers (connection.blocked): fail at once, not
        # after the confirm timeout.
        self.blocked: str | None = None
        self.connection.connection.on_blocked = self._on_blocked
        channel = cast(Any, self.connection.channel())  # py-amqp's Channel (kombu's types: StdChannel)
        channel.confirm_select()
        self.published = 0  # the channel's delivery tags run 1, 2, ...
        self.unsettled: set[int] = set()  # neither acked nor refused yet
        self.refused: set[int] = set()  # refused (basic.nack), not yet reported
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        self.channel = channel
        self.producer = Producer(self.channel, auto_declare=False)
        self.routes: dict[tuple[str, str], _Route] = {}
        self.exchanges: set[str] = set()
        self.queues: set[str] = set()  # declared on this channel besides the routes' (purge)
        self.event_exchange: Any = None

    def _on_blocked(self, reason: str) -> None:
        self.blocked = reason

    def _settle(self, delivery_tag: int, multiple: bool) -> set[int]:
        if not multiple:
            self.unsettled.discard(delivery_tag)
            return {delivery_tag}
        settled = {tag for tag in self.unsettled if tag <= delivery_tag}
        self.unsettled -= settled
        return settled

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self.refused |= self._settle(delivery_tag, multiple)

    def route_for(self, task_name: str, queue: Queue | None = None) -> _Route:
        queue = queue or wiring.queue_for(task_name)
        route = self.routes.get((task_name, queue.name))
        if route is None:
            bound = queue.bind(self.channel)
            bound.declare()
            route = self.routes[task_name, queue.name] = _Route(task_name, bound)
        return route

    def declare_exchange(self, exchange: Exchange) -> None:
        if exchange.name not in self.exchanges:
            exchange.bind(self.channel).declare()
            self.exchanges.add(exchange.name)

    def publish(self, body: str, **kwargs: Any) -> int:
        """Publish on the channel; returns the message's delivery tag (its publisher confirm's)."""
        if self.blocked is not None:
            raise ConnectionError(f"the broker blocks publishing: {self.blocked}")
        self.producer.publish(body, content_type="application/json", content_encoding="utf-8", **kwargs)
        self.published += 1
        self.unsettled.add(self.published)
        return self.published

    def wait_for_confirms(self, tags: range, timeout: float) -> set[int]:
        """Wait until the broker acked or refused every message of ``tags`` (acked: persisted, for
        persistent messages on durable queues); returns those it refused. Messages published
        meanwhile by others on this thread (a callback's) are theirs to wait for. Raises if
        ``timeout`` runs out first, or the broker blocks publishing."""
        deadline = time.monotonic() + timeout
        while not self.unsettled.isdisjoint(tags):
            if self.blocked is not None:
                raise ConnectionError(f"the broker blocks publishing: {self.blocked}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                awaited = sum(tag in self.unsettled for tag in tags)
                raise TimeoutError(f"the broker did not confirm {awaited} messages")
            self.connection.drain_events(timeout=remaining)
        refused = {tag for tag in tags if tag in self.refused} if self.refused else set()
        self.refused -= refused
        return refused

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


def publish_confirmed(
    messages: Sequence[tuple[str, str]],
    *,
    sent_events: bool = False,
    queue: Queue | None = None,
    countdown: float = 0.0,
) -> None:
    """Publish ``(task name, JSON array of its positional arguments)`` messages in order and return
    once the broker confirmed them all; to ``queue`` instead of each task's own, and not run before
    ``countdown`` seconds when given. Raises BrokerUnavailable if it did not, its ``unsent`` naming
    those the broker refused (a full queue) or may not hold (the link failed: then it is dropped, and
    the next call rebuilds it). Some of those may have reached the broker already, so a retry may
    publish them twice (at-least-once)."""
    publish(messages, sent_events=sent_events, queue=queue, countdown=countdown).confirm()


class Published:
    """Messages handed to the broker whose last confirms are still awaited: ``confirm()`` waits for
    them, on the thread that published them, and raises as ``publish_confirmed`` does."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.unsent: list[int] = []  # positions the broker refused or may not hold
        self.link: _Link | None = None
        self.positions: dict[int, int] = {}  # delivery tag -> position, of those awaiting confirms
        self.error: Exception | None = None

    def settle(self) -> None:
        """Wait for the awaited confirms; raises if the link failed, or was dropped meanwhile (a
        callback's publish on this thread failed: then its confirms never come)."""
        if not self.positions:
            return
        if self.link is None or self.link is not _state.link:
            raise ConnectionError("the broker link was lost before its confirms came")
        tags = range(min(self.positions), max(self.positions) + 1)
        refused = self.link.wait_for_confirms(tags, CONFIRM_TIMEOUT_S)
        self.unsent += sorted(self.positions[tag] for tag in refused if tag in self.positions)
        self.positions = {}

    def confirm(self) -> None:
        if self.error is None:
            try:
                self.settle()
            except Exception as exc:
                if self.link is _state.link:
                    _drop_link()
                self.unsent += sorted(self.positions.values())
                self.positions, self.error = {}, exc
            except BaseException:
                _drop_link()
                raise
        if self.error is not None:
            raise BrokerUnavailable(
                f"publishing {self.count} messages failed: {self.error!r}", unsent=self.unsent
            ) from self.error
        if self.unsent:
            raise BrokerUnavailable(
                f"the broker refused {len(self.unsent)} of {self.count} messages (basic.nack: a full queue)",
                unsent=self.unsent,
            )


def publish(
    messages: Sequence[tuple[str, str]],
    *,
    sent_events: bool = False,
    queue: Queue | None = None,
    countdown: float = 0.0,
) -> Published:
    """Publish as ``publish_confirmed`` does, but return before the broker confirmed the last
    CONFIRM_CHUNK messages: the caller does other work while the broker writes them to its disk,
    then calls ``confirm()`` on the same thread (and keeps what it raises as unsent). Never raises
    BrokerUnavailable itself: ``confirm()`` does."""
    published = Published(len(messages))
    if not messages:
        return published
    eta = (datetime.now(UTC) + timedelta(seconds=countdown)).isoformat() if countdown > 0 else None
    start = 0
    try:
        link = published.link = _link()
        for start in range(0, len(messages), CONFIRM_CHUNK):
            for position in range(start, min(start + CONFIRM_CHUNK, len(messages))):
                task_name, args_json = messages[position]
                tag = _publish_task(link, task_name, args_json, queue=queue, eta=eta, sent_event=sent_events)
                published.positions[tag] = position  # not events
            if start + CONFIRM_CHUNK < len(messages):  # confirmed before the next chunk is sent
                published.settle()
    except Exception as exc:
        _drop_link()
        published.unsent += range(start, len(messages))
        published.positions, published.error = {}, exc
    except BaseException:
        _drop_link()
        raise
    return published


def publish_transient(exchange: Exchange, routing_key: str, body: str) -> None:
    """Publish one non-persistent JSON message to ``exchange`` and return once the broker took it
    (routed, or dropped for want of a queue). Raises BrokerUnavailable, as publish_confirmed does."""
    try:
        link = _link()
        link.declare_exchange(exchange)
        tag = link.publish(body, exchange=exchange.name, routing_key=routing_key, delivery_mode=1)
        if link.wait_for_confirms(range(tag, tag + 1), CONFIRM_TIMEOUT_S):
            raise ConnectionError("the broker refused the message (basic.nack)")
    except Exception as exc:
        _drop_link()
        raise BrokerUnavailable(f"publishing to {exchange.name} failed: {exc!r}", unsent=[0]) from exc
    except BaseException:
        _drop_link()
        raise


def purge(queue: Queue, *, declared_otherwise: bool = False) -> int:
    """Declare ``queue`` as configured and empty it; returns how many messages it held. With
    ``declared_otherwise`` (RabbitMQ refused the declaration: the queue exists with other arguments)
    it is emptied and deleted first. Raises BrokerUnavailable."""
    try:
        link = _link()
        count = 0
        if declared_otherwise:
            count += link.channel.queue_purge(queue.name) or 0
            link.channel.queue_delete(queue.name)
            link.queues.discard(queue.name)
        if queue.name not in link.queues:
            queue.bind(link.channel).declare()
            link.queues.add(queue.name)
        return count + (link.channel.queue_purge(queue.name) or 0)
    except Exception as exc:
        _drop_link()
        raise BrokerUnavailable(f"purging {queue.name} failed: {exc!r}") from exc
    except BaseException:
        _drop_link()
        raise


def _publish_task(
    link: _Link, task_name: str, args_json: str, *, queue: Queue | None, eta: str | None, sent_event: bool
) -> int:
    """Publish one task message; returns its delivery tag."""
    task_id = ids.new_id()
    route = link.route_for(task_name, queue)
    headers = {**route.headers, "id": task_id, "root_id": task_id, "argsrepr": args_json[:_ARGSREPR_MAX]}
    if eta is not None:
        headers["eta"] = eta
    tag = link.publish(
        f"[{args_json}, {{}}, {_EMBED}]",
        exchange=route.queue.exchange.name,
        routing_key=route.queue.routing_key,
        headers=headers,
        correlation_id=task_id,
        delivery_mode=2,
    )
    if sent_event and current_app.conf.task_send_sent_event:
        _send_sent_event(link, route, task_id, headers["argsrepr"])
    return tag


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

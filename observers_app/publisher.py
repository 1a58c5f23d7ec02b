"""Publishes Celery task messages straight through kombu: the lean path under notify_observers.

Celery's ``apply_async`` spends ~250 us building each message (shared BASELINES). The hub's
tasks take one JSON array of plain arguments, so the message is protocol 2 built from a
few constants and the arguments the caller already serialized, published on a warm
per-thread producer. Workers see an ordinary Celery task.
"""

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
from kombu import Connection, Producer, Queue

_EMBED = '{"callbacks": null, "errbacks": null, "chain": null, "chord": null}'
_RETRY_POLICY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.2, "interval_max": 1}
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


class _ThreadState(threading.local):
    connection: Connection | None = None
    producer: Producer | None = None
    event_exchange: Any = None
    routes: dict[str, _Route]

    def __init__(self) -> None:
        self.routes = {}


_state = _ThreadState()
_origin = anon_nodename()


def _reset_after_fork() -> None:
    # A forked child must never share the parent's broker socket.
    global _state, _origin
    _state = _ThreadState()
    _origin = anon_nodename()


os.register_at_fork(after_in_child=_reset_after_fork)


def _producer() -> Producer:
    if _state.producer is None:
        connection = current_app.connection_for_write()
        _state.connection = connection
        _state.producer = Producer(connection)
    return _state.producer


def _route_for(task_name: str) -> _Route:
    route = _state.routes.get(task_name)
    if route is None:
        queue = current_app.amqp.router.route({}, task_name)["queue"]
        queue.maybe_bind(_producer().channel)
        queue.declare()
        route = _state.routes[task_name] = _Route(task_name, queue)
    return route


def publish_task(task_name: str, args_json: str, *, sent_event: bool = True) -> str:
    """Send one ``task_name`` message whose positional arguments are the JSON array ``args_json``,
    and its "task-sent" event when ``task_send_sent_event`` is on, unless ``sent_event`` is False.

    Returns the task id.
    """
    task_id = str(uuid.uuid4())
    route = _route_for(task_name)
    headers = {**route.headers, "id": task_id, "root_id": task_id, "argsrepr": args_json[:_ARGSREPR_MAX]}
    producer = _producer()
    producer.publish(
        f"[{args_json}, {{}}, {_EMBED}]",
        exchange=route.queue.exchange,
        routing_key=route.queue.routing_key,
        headers=headers,
        content_type="application/json",
        content_encoding="utf-8",
        correlation_id=task_id,
        delivery_mode=2,
        retry=True,
        retry_policy=_RETRY_POLICY,
    )
    if sent_event and current_app.conf.task_send_sent_event:
        _send_sent_event(producer, route, task_id, headers["argsrepr"])
    return task_id


def _send_sent_event(producer: Producer, route: _Route, task_id: str, argsrepr: str) -> None:
    """The "task-sent" event Celery's apply_async sends when task_send_sent_event is on (for Flower),
    built from the route's constant fields like the task message, instead of by Celery's dispatcher."""
    if _state.event_exchange is None:
        exchange = get_exchange(_state.connection, name=current_app.conf.event_exchange)
        exchange.maybe_bind(producer.channel)
        exchange.declare()
        _state.event_exchange = exchange
    event = {
        **route.sent_event,
        "uuid": task_id,
        "root_id": task_id,
        "args": argsrepr,
        "timestamp": time.time(),
        "clock": cast(Any, current_app).clock.forward(),  # the app's logical clock (untyped in celery-types)
    }
    producer.publish(
        json.dumps(event),
        exchange=_state.event_exchange.name,
        routing_key="task.sent",
        headers={"hostname": _origin},
        content_type="application/json",
        content_encoding="utf-8",
        delivery_mode=1,
        retry=True,
        retry_policy=_RETRY_POLICY,
    )

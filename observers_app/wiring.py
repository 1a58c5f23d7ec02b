"""The hub's Celery wiring: its task names, its own queues, the routes of its own tasks, its beat entry.

Installed on the host's Celery app from ``AppConfig.ready()``: the hub adds its queues to the app's
known queues (so a plain ``celery -A mysite worker`` consumes them beside the host's), a router for its
own tasks before the host's routes, and its sweep to beat's schedule. It never touches the host's
default queue, the routes of the host's tasks or worker-wide settings.
"""

from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from . import conf

DISPATCH_TASK = "observers.dispatch"
DELIVER_TASK = "observers.deliver"
SWEEP_TASK = "observers.sweep"
WEBHOOK_TASK = "observers.deliver_webhook"
REPLAY_TASK = "observers.replay"
TASKS = (DISPATCH_TASK, DELIVER_TASK, SWEEP_TASK, WEBHOOK_TASK, REPLAY_TASK)
SWEEP_ENTRY = "observers-sweep"


def _queue_type() -> dict[str, Any]:
    return {"x-queue-type": "quorum"} if conf.quorum_queues() else {}


def _hub_queue(name: str, **arguments: Any) -> Queue:
    """A hub queue on an exchange of its own name, with ``arguments`` and the configured queue type."""
    return Queue(name, Exchange(name), routing_key=name, queue_arguments={**arguments, **_queue_type()})


def dispatch_queue() -> Queue:
    """Notifications to fan out: bounded, the oldest dropped (newest wins) into the shed queue."""
    return _hub_queue(
        conf.queue_name(),
        **{
            "x-max-length": conf.queue_max_length(),
            "x-overflow": "drop-head",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": shed_queue().name,
        },
    )


def deliver_queue() -> Queue:
    """Pages of fan-outs already started, durable notifications, history replays, and the sweep: bounded
    in bytes, never shed (when full the broker refuses a message, its publisher confirm says so, and it
    waits in the outbox table or its caller's send buffer until the broker takes it)."""
    return _hub_queue(
        f"{conf.queue_name()}.deliver",
        **{"x-max-length-bytes": conf.deliver_queue_max_bytes(), "x-overflow": "reject-publish"},
    )


def shed_queue() -> Queue:
    """What the full dispatch queue dropped, counted (and emptied) by the workers and the sweep; no
    worker consumes it. Bounded too, the oldest dropped, for a time no worker runs."""
    arguments = {"x-max-length": conf.shed_queue_max_length(), "x-overflow": "drop-head"}
    return Queue(f"{conf.queue_name()}.shed", durable=True, queue_arguments={**arguments, **_queue_type()})


def webhook_queue() -> Queue:
    """Webhook POSTs and their retries: an endpoint slow to answer never delays the callbacks."""
    return _hub_queue(f"{conf.queue_name()}.webhooks")


def consumed_queues() -> tuple[Queue, Queue, Queue]:
    """The queues hub workers consume (``-Q`` of a dedicated hub worker)."""
    return dispatch_queue(), deliver_queue(), webhook_queue()


def queue_for(task_name: str) -> Queue:
    """The queue a hub task's messages go to."""
    if task_name == DISPATCH_TASK:
        return dispatch_queue()
    return webhook_queue() if task_name == WEBHOOK_TASK else deliver_queue()


def route_hub_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> Any:
    """A Celery router: each hub task to its queue; None (the host's routes decide) for any other."""
    return {"queue": queue_for(name).name} if name in TASKS else None


def routes_of(app: Celery) -> tuple[Any, ...]:
    """``app``'s task_routes setting as a sequence of routers (it may be one, or none)."""
    routes = app.conf.task_routes
    if routes is None:
        return ()
    return tuple(routes) if isinstance(routes, list | tuple) else (routes,)


def install(app: Celery) -> None:
    """Add the hub's queues to ``app``'s known queues, a router for the hub's tasks before the host's
    routes, and the sweep to beat's schedule (once; an entry the host wrote under the same name is
    kept)."""
    queues = app.amqp.queues
    for queue in consumed_queues():
        if queue.name not in queues:
            # Among the queues a worker consumes when no -Q selects others (ready() runs before a
            # worker reads its -Q/-X options).
            queues.select_add(queue)
    routes = routes_of(app)
    if route_hub_task not in routes:
        # First, so that no route of the host's sends the hub's tasks elsewhere; it answers nothing
        # for any other task, whose routes stay the host's.
        app.conf.task_routes = (route_hub_task, *routes)
        app.amqp.flush_routes()
        vars(app.amqp).pop("router", None)  # a router built before reads the new routes when rebuilt
    if SWEEP_ENTRY not in app.conf.beat_schedule:
        app.add_periodic_task(
            conf.sweep_interval(),
            app.signature(SWEEP_TASK),
            name=SWEEP_ENTRY,
            queue=deliver_queue().name,
        )

"""Hands a task's messages to the worker pool in batches: one pool job runs many of them.

Celery's bookkeeping per pool job (receiving, routing to a pool process, acknowledging, events)
caps a hub that sends one dispatch message per notification, whatever its callbacks cost. A task
whose base is ``BatchedTask`` gets a consumer strategy (Celery's ``Task.Strategy`` hook, as
celery-batches does; that package pins celery<5.7 and acks a batch that raised) that buffers its
messages and sends them to the pool together, as many as waited while every pool process was busy
(at most ``batch_size``).
"""

import logging
import time
from typing import Any, cast

from celery import Task, current_app
from celery.worker.request import Request, create_request_cls  # type: ignore[attr-defined]
from celery.worker.strategy import hybrid_to_proto2, proto1_to_proto2  # type: ignore[attr-defined]

from . import retrying

logger = logging.getLogger(__name__)


DONE, RETRY, PARKED = "done", "retry", "parked"


class BatchedTask(Task):
    """The task's function takes the positional args of many messages, as a list, and returns one
    outcome per message: DONE; RETRY to have it redelivered; or an error text (it failed: logged,
    told to ``failed`` and redelivered; ``parked`` decides, before each run of a redelivered message,
    whether to stop and park it, so a message that always fails is not redelivered forever). If the
    function raises, every message of the batch failed so.

    Not applied to these messages, which the hub's publisher never sets: ETA/countdown, expiry,
    revocation, rate limits. Prefork and solo pools only (the batcher is not thread-safe).

    Each message is acknowledged when its batch returned its outcome; one that failed, or whose pool
    process died (told to ``died``), goes back on the queue (until the task parks it); one that asks
    for a retry (the database or the broker went away) is held, then requeued (``worker.retrying``).
    A message whose pool process died runs in a batch of its own from then on, so that a message that
    kills its process never takes the others of its batch with it. Each still sends its own
    task-received and task-succeeded (or -failed) events, so Flower lists it; a requeued one sends
    task-rejected (Request.reject does)."""

    # Largest batch: one pool job of many notifications stays short enough to spread across the pool.
    batch_size = 50
    _batcher: "_Batcher | None" = None

    def parked(self, task_id: str, args: list[Any], redelivered: bool) -> bool:
        """Whether to park this message instead of running it (it is acknowledged); never, here."""
        return False

    def failed(self, task_id: str, error: str) -> None:
        """Told of a message that failed (it is delivered again)."""

    def died(self, task_ids: list[str], error: str) -> None:
        """Told, in the worker's main process, of messages whose pool process died running them."""

    # Celery instantiates Task.Strategy (a dotted name by default) with the task, app and consumer.
    def Strategy(self, task: "BatchedTask", app: Any, consumer: Any) -> Any:  # type: ignore[override]
        Req = create_request_cls(
            Request, task, consumer.pool, consumer.hostname, consumer.event_dispatcher, app=app
        )
        # A reconnect builds new strategies: the old batcher's waiting messages were on the lost
        # channel (the broker redelivers them), so it must never send them.
        if task._batcher is not None:
            task._batcher.retire()
        batcher = task._batcher = _Batcher(task, consumer.pool)

        def task_message_handler(
            message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kwargs: Any
        ) -> None:
            if body is None and "args" not in message.payload:
                body, headers, decoded, utc = message.body, message.headers, False, app.uses_utc_timezone()
            elif "args" in message.payload:
                body, headers, decoded, utc = hybrid_to_proto2(message, message.payload)
            else:
                body, headers, decoded, utc = proto1_to_proto2(message, body)
            request = Req(
                message,
                on_ack=ack,
                on_reject=reject,
                app=app,
                hostname=consumer.hostname,
                eventer=consumer.event_dispatcher,
                task=task,
                connection_errors=consumer.connection_errors,
                body=body,
                headers=headers,
                decoded=decoded,
                utc=utc,
            )
            request.send_event(
                "task-received", name=request.name, args=request.argsrepr, kwargs=request.kwargsrepr
            )
            batcher.add(request)

        return task_message_handler


class _Batcher:
    """A batch goes to the pool as soon as a pool process is free for it; while every process is
    busy, messages wait, so the next batch is bigger. No timer: an idle worker adds no latency, a
    loaded one batches by itself."""

    # Messages remembered as having been in a batch whose process died.
    SUSPECTS_MAX = 10_000

    def __init__(self, task: BatchedTask, pool: Any) -> None:
        self.task = task
        self.pool = pool
        self.waiting: list[Any] = []
        self.running = 0
        self.retired = False
        self.suspects: set[str] = set()

    def add(self, request: Any) -> None:
        self.waiting.append(request)
        self.send_ready()

    def retire(self) -> None:
        self.retired = True
        self.waiting.clear()

    def send_ready(self) -> None:
        while self.waiting and not self.retired and self.running < self.pool.num_processes:
            size = 1
            if self.waiting[0].id not in self.suspects:  # a suspect runs alone
                while (
                    size < min(self.task.batch_size, len(self.waiting))
                    and self.waiting[size].id not in self.suspects
                ):
                    size += 1
            batch, self.waiting = self.waiting[:size], self.waiting[size:]
            self.running += 1
            _send_to_pool(self.pool, self.task, batch, on_finished=self.finished, on_died=self.died)

    def finished(self) -> None:
        self.running -= 1
        self.send_ready()

    def died(self, requests: list[Any]) -> None:
        if len(self.suspects) + len(requests) > self.SUSPECTS_MAX:
            self.suspects.clear()
        self.suspects.update(request.id for request in requests)


def _send_to_pool(
    pool: Any, task: BatchedTask, requests: list[Any], *, on_finished: Any, on_died: Any
) -> None:
    started = time.monotonic()

    def on_return(outcomes: list[str]) -> None:
        runtime = time.monotonic() - started
        try:
            for request, outcome in zip(requests, outcomes, strict=True):
                if outcome == RETRY:
                    retrying.requeue_later(request)
                    continue
                retrying.forget(request.id)
                if outcome == DONE:
                    request.acknowledge()
                    request.send_event("task-succeeded", result=None, runtime=runtime)
                elif outcome == PARKED:
                    request.acknowledge()
                    request.send_event("task-failed", exception="parked as a dead letter", traceback="")
                else:  # failed: delivered again, until the task parks it
                    request.reject(requeue=True)
                    request.send_event("task-failed", exception=outcome, traceback="")
        finally:
            on_finished()

    def on_error(exc_info: Any) -> None:
        # The pool process died (or the job could not run): redeliver, as reject_on_worker_lost does.
        logger.error("event=batch_lost task=%s messages=%d error=%r", task.name, len(requests), exc_info)
        try:
            on_died(requests)
            exc = getattr(exc_info, "exception", exc_info)  # billiard's ExceptionInfo, or the exception
            exc = getattr(exc, "exc", exc)  # itself wrapped with its traceback (ExceptionWithTraceback)
            task.died([request.id for request in requests], f"{type(exc).__name__}: {exc}")
            for request in requests:
                request.reject(requeue=True)
        finally:
            on_finished()

    messages = [
        (request.id, bool(request.delivery_info.get("redelivered")), request.args) for request in requests
    ]
    pool.apply_async(
        run_batch_in_pool,
        args=(task.name, messages),
        callback=on_return,
        error_callback=on_error,
    )


def run_batch_in_pool(task_name: str, messages: list[tuple[str, bool, list[Any]]]) -> list[str]:
    """Runs in a pool process (module level, so the pool can name it): ``messages`` are
    ``(task id, redelivered, args)``; the task parks some, runs the others."""
    task = cast(BatchedTask, current_app.tasks[task_name])
    screened = [
        PARKED if task.parked(task_id, args, redelivered) else None for task_id, redelivered, args in messages
    ]
    args_list = [args for (_, _, args), outcome in zip(messages, screened, strict=True) if outcome is None]
    try:
        ran = list(task.run(args_list)) if args_list else []
        if len(ran) != len(args_list):
            raise ValueError(f"{len(ran)} outcomes for {len(args_list)} messages")
    except Exception as exc:
        logger.exception("event=batch_failed task=%s messages=%d", task_name, len(args_list))
        ran = [f"{type(exc).__name__}: {exc}"] * len(args_list)
    outcomes = iter(ran)
    results = [outcome or next(outcomes) for outcome in screened]
    for (task_id, _, _), outcome in zip(messages, results, strict=True):
        if outcome not in (DONE, RETRY, PARKED):
            task.failed(task_id, outcome)
    return results

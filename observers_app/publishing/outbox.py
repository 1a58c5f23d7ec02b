"""The durable outbox: notifications written in the caller's transaction, published after commit, and
by the workers when their caller could not (it died, or the broker was away)."""

import logging
import threading
import uuid
from datetime import timedelta
from typing import Any

from celery.signals import worker_process_init, worker_process_shutdown, worker_ready, worker_shutdown
from django.db import connection, connections, transaction
from django.utils import timezone

from .. import conf
from ..db import prepared_rows
from ..models import OutboxMessage
from ..telemetry import counters
from ..wiring import DISPATCH_TASK
from . import broker, buffer

logger = logging.getLogger(__name__)

# Rows a worker publishes per transaction, and how often it looks.
BATCH = 500
SCAN_S = 1.0


def write(notification_id: str, args_json: str) -> None:
    """Insert the dispatch message in the current transaction (or commit it at once in autocommit):
    one statement planned once per connection, on the caller's hot path."""
    table = OutboxMessage._meta.db_table  # a model constant, never data
    if connection.vendor == "postgresql":
        # The id as text and the database's clock: no Python-side conversion on the caller's hot path.
        sql = f"INSERT INTO {table} (id, args, created_at) VALUES (%s::uuid, %s, now())"  # noqa: S608
        prepared_rows(connection, sql, [notification_id, args_json])
        return
    pk = OutboxMessage._meta.pk
    assert pk is not None
    sql = f"INSERT INTO {table} (id, args, created_at) VALUES (%s, %s, %s)"  # noqa: S608
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    prepared_rows(
        connection, sql, [pk.get_db_prep_value(uuid.UUID(notification_id), connection), args_json, now]
    )


def mark_sent(notification_ids: list[str]) -> None:
    """Delete the rows of messages the broker confirmed (on PostgreSQL one statement planned once:
    the publishing thread shares the caller's interpreter lock)."""
    try:
        if connection.vendor == "postgresql":
            table = OutboxMessage._meta.db_table  # a model constant, never data
            prepared_rows(connection, f"DELETE FROM {table} WHERE id = ANY(%s::uuid[])", [notification_ids])  # noqa: S608
        else:
            OutboxMessage.objects.filter(id__in=notification_ids).delete()
    except Exception:
        connection.close()  # a broken connection is opened afresh by the next query
        raise


def publish_stale(*, grace_s: float | None = None) -> int:
    """Publish, with confirms, the messages older than OBSERVERS_OUTBOX_GRACE, oldest first, and delete
    them: a batch per transaction, its rows locked with skip_locked so that workers share the work.
    Returns how many were published."""
    older_than = timezone.now() - timedelta(seconds=conf.outbox_grace() if grace_s is None else grace_s)
    published = 0
    while True:
        with transaction.atomic():
            rows = list(
                OutboxMessage.objects.select_for_update(skip_locked=True)
                .filter(created_at__lt=older_than)
                .order_by("created_at")
                .values_list("id", "args")[:BATCH]
            )
            if rows:
                broker.publish_confirmed([(DISPATCH_TASK, args) for _, args in rows])
                OutboxMessage.objects.filter(id__in=[pk for pk, _ in rows]).delete()
        published += len(rows)
        if len(rows) < BATCH:
            break
    if published:
        logger.warning("event=outbox_published_by_worker messages=%d", published)
        counters.increment({"outbox_republished": published})
    return published


class _Republisher(threading.Thread):
    """Publishes what dead callers left in the outbox, in a worker's pool process (a prefork
    worker's main process forks replacements for its pool processes: a thread there would be
    inherited half-way by every one), or in the worker's own process where its pool does not fork."""

    def __init__(self) -> None:
        super().__init__(name="observers-outbox", daemon=True)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(SCAN_S):
            try:
                publish_stale()
            except Exception:
                logger.warning("event=outbox_scan_failed retry_in_s=%s", SCAN_S, exc_info=True)
                connections.close_all()
        connections.close_all()


_republisher: _Republisher | None = None


def connect() -> None:
    """Every worker publishes what dead callers left: no extra process to run (called once, from
    ``AppConfig.ready()``). Prefork workers run it in each pool process, started after its fork."""
    buffer.when_durable_sent(mark_sent)
    worker_process_init.connect(_start_republisher, weak=False)
    worker_ready.connect(_start_unless_prefork, weak=False)
    worker_process_shutdown.connect(_stop_republisher, weak=False)
    worker_shutdown.connect(_stop_republisher, weak=False)


def _start_unless_prefork(sender: Any = None, **kwargs: Any) -> None:
    """At a worker's start: its pool processes run the republisher if it forks them, else it does."""
    if type(getattr(sender, "pool", None)).__module__ != "celery.concurrency.prefork":
        _start_republisher()


def _start_republisher(**kwargs: Any) -> None:
    global _republisher
    if _republisher is None:
        _republisher = _Republisher()
        _republisher.start()


def _stop_republisher(**kwargs: Any) -> None:
    global _republisher
    if _republisher is not None:
        _republisher.stopped.set()
        _republisher = None

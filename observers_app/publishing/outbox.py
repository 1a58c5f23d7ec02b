"""The durable outbox: notifications written in the caller's transaction, published after commit, and
by the workers when their caller could not (it died, or the broker was away); and the deliver pages
the broker refused (a full deliver queue), published by the workers once it takes them.

What it holds is published to the deliver queue, which never sheds: a durable notification, or a page
of one, is never dropped by the dispatch queue's bound (``publishing.backpressure``).
"""

import logging
import uuid
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from .. import conf, wiring
from ..db import prepared_rows
from ..exceptions import BrokerUnavailable
from ..models import OutboxMessage
from ..telemetry import counters
from ..wiring import DISPATCH_TASK
from . import broker, buffer

logger = logging.getLogger(__name__)

# Rows a worker publishes per transaction.
BATCH = 500


def write(notification_id: str, args_json: str) -> None:
    """Insert the dispatch message in the current transaction (or commit it at once in autocommit):
    one statement written once, past the ORM, on the caller's hot path."""
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
    """Delete the rows of messages the broker confirmed (on PostgreSQL one statement past the ORM:
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


def hold(messages: list[tuple[str, str]]) -> None:
    """Keep ``(task name, JSON arguments)`` messages the broker did not take, for the workers to
    publish as soon as it does (every second, ``upkeep.ticker``)."""
    OutboxMessage.objects.bulk_create(
        OutboxMessage(id=uuid.uuid4(), task=task_name, args=args_json) for task_name, args_json in messages
    )
    counters.increment({"messages_held": len(messages)})


def publish_stale(*, grace_s: float | None = None) -> int:
    """Publish, with confirms, what waits: durable notifications older than OBSERVERS_OUTBOX_GRACE and
    held messages, oldest first, and delete those the broker confirmed; a batch per transaction, its
    rows locked with skip_locked so that workers share the work. Returns how many were published;
    what the broker did not take stays for the next call."""
    older_than = timezone.now() - timedelta(seconds=conf.outbox_grace() if grace_s is None else grace_s)
    waiting = ~Q(task=DISPATCH_TASK) | Q(created_at__lt=older_than)
    published = 0
    while True:
        with transaction.atomic():
            rows = list(
                OutboxMessage.objects.select_for_update(skip_locked=True)
                .filter(waiting)
                .order_by("created_at")
                .values_list("id", "task", "args")[:BATCH]
            )
            sent = _publish(rows)
            OutboxMessage.objects.filter(id__in=sent).delete()
        published += len(sent)
        if len(sent) < BATCH:
            break
    if published:
        logger.warning("event=outbox_published_by_worker messages=%d", published)
        counters.increment({"outbox_republished": published})
    return published


def _publish(rows: list[tuple[uuid.UUID, str, str]]) -> list[uuid.UUID]:
    """Publish the rows' messages to the deliver queue; returns the ids of those the broker confirmed."""
    try:
        broker.publish_confirmed([(task, args) for _, task, args in rows], queue=wiring.deliver_queue())
    except BrokerUnavailable as exc:
        unsent = set(range(len(rows)) if exc.unsent is None else exc.unsent)
        logger.warning("event=outbox_waits messages=%d error=%s", len(unsent), exc)
        return [row[0] for position, row in enumerate(rows) if position not in unsent]
    return [row[0] for row in rows]


def connect() -> None:
    """Delete a durable notification's row once the broker confirmed it (called once, from
    ``AppConfig.ready()``); the workers publish what waits (``upkeep.ticker``)."""
    buffer.when_durable_sent(mark_sent)

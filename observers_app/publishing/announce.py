"""An add's side of the views: tell every live view the names just observed, and wait until each has
learned them or its lease has ended (see view.py for why that is enough).

It runs in the add's transaction, before its commit, holding PRESENCE_LOCK shared from the add's first
statement to its commit: a view registers under the same lock, exclusive, so it either is among the
rows read here or registers after the commit and reads the names after it. No live view, no message
and no wait. Told before the commit, a view may answer "yes" a moment early, or for an add rolled
back: a message the worker finds empty. And since every add that made a name observed had told the
views before it committed, an add of a name that already has a committed observer row of its kind
needs to tell nobody.

A change the broker did not take: the views read are deleted (each loads again when it next renews:
its renewal waits for this commit) and the add waits out one lease.
"""

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Collection
from typing import Any

import amqp
from celery import current_app
from django.db import connection

from .. import conf
from ..db import prepared_rows
from ..models import PRESENCE_LOCK, PresenceView
from .view import exchange_name

logger = logging.getLogger(__name__)

# RabbitMQ's direct reply-to: the views' acknowledgements come back on the channel that published.
REPLY_TO = "amq.rabbitmq.reply-to"
CONFIRM_TIMEOUT_S = 10.0
# Monotonic clocks may run apart by up to 500 ppm each under NTP's slewing: the wait allows twice that.
MAX_CLOCK_RATE_ERROR = 0.001


class _Link:
    """One thread's connection for announcing: a channel that publishes confirmed and reads the views'
    acknowledgements. Dropped whole after any error."""

    def __init__(self) -> None:
        self.kombu = current_app.connection_for_write()
        self.kombu.connect()
        self.connection = self.kombu.connection
        self.channel = self.connection.channel()
        self.channel.exchange_declare(exchange_name(), "fanout", durable=False, auto_delete=False)
        self.channel.basic_consume(REPLY_TO, no_ack=True, callback=self._on_reply)
        self.correlation = ""
        self.waiting: set[str] = set()

    def _on_reply(self, message: Any) -> None:
        if message.properties.get("correlation_id") == self.correlation:
            body = message.body
            self.waiting.discard(body.decode() if isinstance(body, bytes) else body)

    def tell(self, body: str, views: set[str], lease: float) -> set[str]:
        """Publish ``body`` to every view and wait for ``views`` to acknowledge it, at most ``lease``
        (and the clocks' allowance) after the broker took it; returns those that did not."""
        self.correlation = uuid.uuid4().hex
        self.waiting = set(views)
        self.channel.basic_publish_confirm(
            amqp.Message(body, reply_to=REPLY_TO, correlation_id=self.correlation),
            exchange=exchange_name(),
            routing_key="",
            confirm_timeout=CONFIRM_TIMEOUT_S,
        )
        deadline = time.monotonic() + lease * (1 + MAX_CLOCK_RATE_ERROR)
        while self.waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                self.connection.drain_events(timeout=remaining)
        return self.waiting

    def drop(self) -> None:
        try:
            self.kombu.release()
        except Exception:
            logger.debug("event=presence_link_close_failed", exc_info=True)


_local = threading.local()


def announce(
    names: list[str],
    patterns: list[str],
    *,
    learned: Collection[str] = (),
    registered: list[tuple[Any, ...]] | None = None,
) -> None:
    """Return once every view that may still believe ``names`` and ``patterns`` unobserved has learned
    them, or can no longer answer "no" without learning them (``learned``: the ids of views that hold
    them already; ``registered``: as ``live_views`` takes it). Called in the add's transaction, after
    ``hold_views``."""
    views = live_views(registered).difference(learned)
    if not views:
        return
    lease = conf.presence_view_lease()
    body = json.dumps({"names": names, "patterns": patterns})
    try:
        late = _tell(body, views, lease)
    except Exception:
        logger.warning("event=presence_announce_failed views=%d", len(views), exc_info=True)
        _drop_link()
        _evict(views)
        time.sleep(lease * (1 + MAX_CLOCK_RATE_ERROR))
        return
    if late:
        logger.info("event=presence_view_late views=%d", len(late))


def _tell(body: str, views: set[str], lease: float) -> set[str]:
    """Publish the change to the views and wait for them; a link the broker dropped while idle is
    opened again once before the add gives up on telling them."""
    try:
        return _link().tell(body, views, lease)
    except Exception:
        logger.info("event=presence_link_reopened", exc_info=True)
        _drop_link()
        return _link().tell(body, views, lease)


def hold_views() -> None:
    """Take PRESENCE_LOCK shared until the current transaction ends: no view registers meanwhile.
    First in an add's transaction, before any row lock (a view waiting for it holds none)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", list(PRESENCE_LOCK))


def views_statement() -> tuple[str, list[Any]]:
    """The statement that reads the registered views, each with whether its lease has ended: what
    ``live_views`` reads, unless an add read it already (after ``hold_views``, in its transaction)."""
    table = connection.ops.quote_name(PresenceView._meta.db_table)
    return f"SELECT id, expires_at < now() FROM {table}", []  # noqa: S608


def live_views(registered: list[tuple[Any, ...]] | None = None) -> set[str]:
    """The ids of the registered views (``registered``: the rows ``views_statement`` read, if read
    already); those whose lease has ended are deleted (each loads again)."""
    table = connection.ops.quote_name(PresenceView._meta.db_table)
    rows = prepared_rows(connection, *views_statement()) if registered is None else registered
    with connection.cursor() as cursor:
        views = {str(view_id) for view_id, _ in rows}
        expired = [view_id for view_id, ended in rows if ended]
        if expired:
            cursor.execute(
                f"DELETE FROM {table} WHERE id = ANY(%s) AND expires_at < now() RETURNING id",  # noqa: S608
                [expired],
            )
            views -= {str(view_id) for (view_id,) in cursor.fetchall()}
    return views


def _evict(views: set[str]) -> None:
    """Delete the rows of views an add could not tell (each stops answering and loads again). A
    failure fails the add: its transaction cannot commit with those views untold."""
    try:
        PresenceView.objects.filter(id__in=list(views)).delete()
    except Exception:
        logger.error("event=presence_views_not_told views=%d", len(views), exc_info=True)
        raise


def _link() -> _Link:
    link = getattr(_local, "link", None)
    if link is None:
        link = _local.link = _Link()
    return link


def _drop_link() -> None:
    link = getattr(_local, "link", None)
    _local.link = None
    if link is not None:
        link.drop()


def reset_after_fork() -> None:
    """A forked child never uses its parent's links (kept referenced, never closed here)."""
    global _local
    _inherited.append(_local)
    _local = threading.local()


_inherited: list[threading.local] = []

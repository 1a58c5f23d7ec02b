"""The process's view of the observed names: "no observer" answered from memory, never stale.

A view is built on its own thread: it binds an exclusive queue of its own to the presence exchange
(a fanout, ``<OBSERVERS_QUEUE>.presence``), registers a row (``PresenceView``) under PRESENCE_LOCK,
loads every observed name and pattern, then applies the changes adds publish (``announce.py``) and
acknowledges each. The queue is bound before the row is written and the names are read after, so an
add either sees the row and tells the view, or committed before the view read the names.

The view answers "no" only under its lease: a renewal starts at ``t0``, sends a marker through its
own queue and, once the marker comes back (every change queued before it applied), renews the row;
only then may the view answer until ``t0 + OBSERVERS_PRESENCE_VIEW_LEASE``. An add that a view did
not acknowledge waits that long after its change was queued: a lease taken before then has ended,
one taken after includes the change. A row that is gone when the view renews (an add could not
publish and deleted it, or it had expired) and any broker or database error end the view: its
process asks the database until a new view is loaded.
"""

import atexit
import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import amqp
from celery import current_app
from celery.signals import worker_process_shutdown
from django.db import connection, connections, transaction

from .. import conf
from ..models import PRESENCE_LOCK, Observer, PresenceView
from .name_set import ObservedNames

logger = logging.getLogger(__name__)

# Seconds between two tries to build a view after a failure.
RETRY_S = 1.0
# Longest wait for the broker in one turn of the view's loop.
TICK_S = 0.05
# Names read per round trip while loading.
LOAD_CHUNK = 10_000
# Longest wait for the broker between two chunks of a load.
LOAD_DRAIN_S = 0.001
# A view keeps every name it learns until it loads again: it does so once it has learned more names
# than it loaded (and at least this many), so its memory follows the names observed, not the churn.
RELOAD_AFTER = 100_000


def exchange_name() -> str:
    return f"{conf.queue_name()}.presence"


class LeaseLost(Exception):
    """The view's row was deleted: an add could not tell it a name, so it must load again."""


class Reload(Exception):
    """The view learned more names than it loaded: it registers and loads again."""


class View:
    def __init__(self) -> None:
        self.id = uuid.uuid4()
        self.names = ObservedNames()
        self.valid_until = 0.0  # on this process's monotonic clock
        self.lock = threading.Lock()  # every write to the names, and the swap of a freshly loaded set
        self.stopped = threading.Event()
        self.loaded = threading.Event()
        self.link: Any = None
        self.channel: Any = None
        self.queue = ""
        self.marker: tuple[str, float] | None = None
        self.next_renewal = 0.0
        self.failures = 0
        self.thread = threading.Thread(target=self._run, name="observers-presence-view", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopped.set()
        self.valid_until = 0.0
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout)

    def answer(self, name: str) -> bool | None:
        """Whether ``name`` may have an observer, or None when the view cannot say (not loaded, lease
        ended): then the caller asks the database."""
        names = self.names  # first: a view going down ends its lease before it empties its names
        if time.monotonic() >= self.valid_until:
            return None
        return names.observes(name)

    def remember(self, names: list[str], *, glob: bool) -> None:
        """Names (or patterns) this process has just added: observed here from now on, before any
        message says so."""
        with self.lock:
            if glob:
                self.names.add_patterns(names)
            else:
                self.names.add_names(names)

    # The view's thread.

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                self._serve()
            except Reload:
                continue  # at once, without a failure's wait
            except Exception:
                self.failures += 1
                level = logging.WARNING if self.failures == 1 else logging.DEBUG
                logger.log(level, "event=presence_view_down view=%s", self.id, exc_info=True)
            finally:
                self._down()
            self.stopped.wait(RETRY_S)
        self._down()

    def _serve(self) -> None:
        self.link = current_app.connection_for_write()
        self.link.connect()
        self.channel = self.link.connection.channel()
        exchange = exchange_name()
        self.channel.exchange_declare(exchange, "fanout", durable=False, auto_delete=False)
        self.queue = f"{exchange}.{self.id}"
        self.channel.queue_declare(self.queue, exclusive=True, auto_delete=True)
        self.channel.queue_bind(self.queue, exchange)
        self.channel.basic_consume(self.queue, no_ack=True, callback=self._on_message)
        _register(self.id)
        self.next_renewal = time.monotonic() + conf.presence_view_lease() / 3
        names = load_names(between_chunks=self._hold_while_loading)
        with self.lock:
            # What this process added while it loaded (its transaction may not have committed yet).
            names.added.update(self.names.added)
            names.add_patterns(pattern for known in self.names.patterns.values() for pattern in known)
            self.names = names
        self.loaded.set()
        self.failures = 0
        self.next_renewal = 0.0
        while not self.stopped.is_set():
            now = time.monotonic()
            if self.marker is None and now >= self.next_renewal:
                self.marker = (uuid.uuid4().hex, now)
                self.channel.basic_publish(
                    amqp.Message(json.dumps({"marker": self.marker[0]})), exchange="", routing_key=self.queue
                )
            with contextlib.suppress(TimeoutError):  # socket.timeout too
                self.link.drain_events(timeout=TICK_S)
            self.link.heartbeat_check()

    def _on_message(self, message: Any) -> None:
        body = json.loads(message.body)
        marker = body.get("marker")
        if marker is not None:
            if self.marker is not None and marker == self.marker[0]:
                self._renew(self.marker[1])
            return
        with self.lock:  # this process's own adds change the names too (remember)
            self.names.add_names(body.get("names", ()))
            self.names.add_patterns(body.get("patterns", ()))
        reply_to = message.properties.get("reply_to")
        if reply_to:
            self.channel.basic_publish(
                amqp.Message(str(self.id), correlation_id=message.properties.get("correlation_id", "")),
                exchange="",
                routing_key=reply_to,
            )

    def _hold_while_loading(self) -> None:
        """Between two chunks of a load: the row kept alive, and the changes queued meanwhile applied
        (to the names the loaded set takes over) and acknowledged, so that a load longer than a lease
        neither expires the view nor makes adds wait for it. The view answers nothing until loaded."""
        now = time.monotonic()
        if now >= self.next_renewal:
            self._extend_row(conf.presence_view_lease())
            self.next_renewal = now + conf.presence_view_lease() / 3
        with contextlib.suppress(TimeoutError):  # nothing more queued
            for _ in range(LOAD_CHUNK):
                self.link.drain_events(timeout=LOAD_DRAIN_S)

    def _extend_row(self, lease: float) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {_table()} SET expires_at = now() + %s * interval '1 second' WHERE id = %s",  # noqa: S608
                [lease, self.id],
            )
            if cursor.rowcount != 1:
                raise LeaseLost(f"view {self.id}: its row is gone")

    def _renew(self, started: float) -> None:
        """Every change queued before the marker is applied: renew the row, then the lease from
        ``started``."""
        lease = conf.presence_view_lease()
        self._extend_row(lease)
        self.valid_until = started + lease
        self.next_renewal = started + lease / 3
        self.marker = None
        if len(self.names.added) > max(RELOAD_AFTER, len(self.names.hashes)):
            raise Reload(f"view {self.id}: {len(self.names.added)} names learned since it loaded")

    def _down(self) -> None:
        self.valid_until = 0.0
        with self.lock:
            self.names = ObservedNames()  # answers nothing meanwhile; loaded afresh
        self.loaded.clear()
        self.marker = None
        link, self.link, self.channel = self.link, None, None
        if link is not None:
            try:
                link.release()
            except Exception:
                logger.debug("event=presence_view_close_failed", exc_info=True)
        try:
            PresenceView.objects.filter(id=self.id).delete()
        except Exception:
            logger.debug("event=presence_view_unregister_failed", exc_info=True)
        connections.close_all()  # this thread's own; a restarted database needs a new one anyway


def _table() -> str:
    return connection.ops.quote_name(PresenceView._meta.db_table)


def _register(view_id: uuid.UUID) -> None:
    """Write the view's row once no add is between its read of the views and its commit (each holds
    PRESENCE_LOCK shared until then): an add that did not see the row committed before it."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", list(PRESENCE_LOCK))
        cursor.execute(
            f"INSERT INTO {_table()} (id, host, pid, created_at, expires_at) "  # noqa: S608
            "VALUES (%s, %s, %s, now(), now() + %s * interval '1 second')",
            [view_id, socket.gethostname()[:255], os.getpid(), conf.presence_view_lease()],
        )


def load_names(between_chunks: Callable[[], None] = lambda: None) -> ObservedNames:
    """Every observed name and pattern (a view reads them after its row was written), calling
    ``between_chunks`` before each chunk of names."""
    observers = Observer.objects.order_by()
    patterns = list(observers.filter(is_glob=True).values_list("var_id", flat=True).distinct())
    names = observers.filter(is_glob=False).values_list("var_id", flat=True).distinct()
    return ObservedNames(_in_chunks(names.iterator(chunk_size=LOAD_CHUNK), between_chunks), patterns)


def _in_chunks(rows: Iterator[str], between_chunks: Callable[[], None]) -> Iterator[str]:
    for n, row in enumerate(rows):
        if n % LOAD_CHUNK == 0:
            between_chunks()
        yield row


_view: View | None = None
_view_lock = threading.Lock()
_inherited: list[View] = []  # a forked child's copy of its parent's view: kept, never used


def enabled() -> bool:
    return conf.presence_view() and connection.vendor == "postgresql"


def current() -> View | None:
    """This process's view, started on first use; None when views are off."""
    view = _view
    if view is not None and conf.presence_view():
        return view  # started on PostgreSQL: the vendor is not asked again on the hot path
    if not enabled():
        return None
    return _start()


def existing() -> View | None:
    return _view


def _start() -> View:
    global _view
    with _view_lock:
        if _view is None:
            view = View()
            view.start()
            _view = view
        return _view


def stop() -> None:
    """Stop this process's view and delete its row (at exit, so that no add waits for it)."""
    global _view
    view, _view = _view, None
    if view is not None:
        view.stop()


def connect() -> None:
    """Stop the view at exit and give a forked child none (called once, from ``AppConfig.ready()``):
    a child starts its own on its first notify."""
    os.register_at_fork(after_in_child=_reset_after_fork)
    atexit.register(stop)
    worker_process_shutdown.connect(_stop_in_pool_process, weak=False)


def _stop_in_pool_process(**kwargs: Any) -> None:
    stop()


def _reset_after_fork() -> None:
    global _view, _view_lock
    if _view is not None:
        _inherited.append(_view)  # its thread did not survive the fork, and its socket is the parent's
    _view = None
    _view_lock = threading.Lock()

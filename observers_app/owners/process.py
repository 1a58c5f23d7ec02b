"""The process owner: what keeps it alive while its process lives, and its clean exit.

On PostgreSQL a process owner holds a session advisory lock on a connection of its own: the server
drops the lock the moment that connection dies with the process, so the owner is dead at once and
costs one ``SELECT 1`` a second while alive (which notices a database restart and takes the lock
again). On SQLite, which has no such lock, a thread renews a short lease.
"""

import atexit
import contextlib
import logging
import os
import random
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from celery.signals import worker_process_shutdown, worker_shutdown
from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, InterfaceError, connections

from .. import aio, conf, signals
from ..exceptions import ObserversError
from ..models import OWNER_LOCK_NAMESPACE, Owner
from . import leases
from .leases import OwnerHandle

T = TypeVar("T")
logger = logging.getLogger(__name__)


def _lock_connection() -> Any:
    connection = connections.create_connection(DEFAULT_DB_ALIAS)
    connection.inc_thread_sharing()  # closed at exit, maybe from another thread
    return connection


class _AdvisoryLock:
    """A connection of the process's own holding one session advisory lock until it closes.

    A thread checks the connection every KEEP_S: when the database restarted (the session and its
    lock are gone while the process lives), it connects again and takes the same lock again, so the
    owner is alive again within seconds and the sweep (which waits OBSERVERS_OWNER_GRACE) keeps
    its observers. The same check reads the owner's row: a process cut off for longer than that
    finds its owner swept (closed, or gone), lets the lock go and tells ``on_lost``."""

    KEEP_S = 1.0

    def __init__(self) -> None:
        self.connection = _lock_connection()
        self.key: int | None = None
        self.stopped = threading.Event()
        self.owner_id: uuid.UUID | None = None
        self.on_lost: Callable[[uuid.UUID], None] = lambda owner_id: None

    def try_lock(self, key: int) -> bool:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [OWNER_LOCK_NAMESPACE, key])
            locked = bool(cursor.fetchone()[0])
        if locked:
            self.key = key
        return locked

    def unlock(self, key: int) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [OWNER_LOCK_NAMESPACE, key])
        self.key = None

    def keep(self) -> None:
        threading.Thread(target=self._keep, name="observers-owner-lock", daemon=True).start()

    def _keep(self) -> None:
        held = True
        while not self.stopped.wait(self.KEEP_S) and self.key is not None:
            try:
                if not held:
                    held = self._retake(self.key)
                if held and not self._owner_open():
                    self._lost()
                    return
            except Exception:  # any error (OperationalError, InterfaceError...): this thread must live on
                if held:
                    logger.warning("event=owner_lock_lost key=%s retry_every_s=%s", self.key, self.KEEP_S)
                held = False
                with contextlib.suppress(Exception):
                    self.connection.close()

    def _owner_open(self) -> bool:
        """Whether the owner's row is there and not closed: the keeper's one query a second."""
        table = self.connection.ops.quote_name(Owner._meta.db_table)
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT EXISTS(SELECT 1 FROM {table} WHERE id = %s AND closed_at IS NULL)",  # noqa: S608
                [self.owner_id],
            )
            return bool(cursor.fetchone()[0])

    def _lost(self) -> None:
        """The owner was swept while the process was cut off: let the lock go, and say so."""
        logger.error(
            "event=owner_swept owner=%s key=%s: the process gets a new owner", self.owner_id, self.key
        )
        if self.key is not None:
            with contextlib.suppress(Exception):
                self.unlock(self.key)
        self.key = None
        with contextlib.suppress(Exception):
            self.connection.close()
        if self.owner_id is not None:
            self.on_lost(self.owner_id)

    def _retake(self, key: int) -> bool:
        """On a new connection, take the lock again; False if another session holds it."""
        self.connection = _lock_connection()
        if self.try_lock(key):
            logger.warning("event=owner_lock_retaken key=%d", key)
            return True
        logger.error("event=owner_lock_not_retaken key=%d: another session holds it", key)
        self.connection.close()
        return False

    def stop(self) -> None:
        self.stopped.set()
        self.connection.close()

    def detach_after_fork(self) -> None:
        # The child shares the parent's socket: point its copy at /dev/null, so nothing the child
        # does (not even a goodbye on garbage collection) can end the parent's session and lock.
        raw = self.connection.connection
        if raw is not None:
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, raw.fileno())
            os.close(devnull)


class _Heartbeat(threading.Thread):
    """Renews a process owner's lease every third of its TTL until stopped or the owner is gone."""

    def __init__(self, owner_id: uuid.UUID, ttl_s: float, *, on_lost: Callable[[uuid.UUID], None]) -> None:
        super().__init__(name="observers-owner-heartbeat", daemon=True)
        self.owner_id, self.ttl_s, self.on_lost = owner_id, ttl_s, on_lost
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.ttl_s / 3):
                try:
                    leases.heartbeat_owner(self.owner_id, ttl_s=self.ttl_s)
                # "database is locked", a closed connection (InterfaceError): the next beat tries again.
                except (DatabaseError, InterfaceError):
                    logger.warning("event=owner_heartbeat_failed owner=%s", self.owner_id, exc_info=True)
                    connections.close_all()
        except ObserversError:
            logger.error("event=owner_swept owner=%s: its lease ended while the process lives", self.owner_id)
            self.on_lost(self.owner_id)
        finally:
            connections.close_all()

    def stop(self) -> None:
        self.stopped.set()

    def detach_after_fork(self) -> None:
        """Threads do not survive fork: nothing to detach."""


_current: OwnerHandle | None = None
_current_lock = threading.Lock()


def process_owner() -> OwnerHandle:
    global _current
    with _current_lock:
        if _current is None or _current.closed:
            _current = _in_own_connection(_open_process_owner)
        return _current


aprocess_owner = aio.async_twin(process_owner)


def _open_process_owner() -> OwnerHandle:
    name = f"{os.path.basename(sys.argv[0]) or 'python'} pid {os.getpid()} on {socket.gethostname()}"
    if connections[DEFAULT_DB_ALIAS].vendor != "postgresql":
        ttl_s = conf.process_ttl()
        owner = leases.create_owner(name=name, kind=Owner.Kind.PROCESS, ttl_s=ttl_s)
        heartbeat = _Heartbeat(owner.id, ttl_s, on_lost=_swept)
        heartbeat.start()
        return OwnerHandle(owner.id, name=name, kind=Owner.Kind.PROCESS, ttl_s=ttl_s, keepalive=heartbeat)
    lock = _AdvisoryLock()
    for _ in range(10):
        key = random.randint(1, 2**31 - 1)  # noqa: S311 - a lock id, not a secret
        if not lock.try_lock(key):
            continue
        try:
            owner = leases.create_owner(name=name, kind=Owner.Kind.PROCESS, ttl_s=None, lock_key=key)
        except IntegrityError:  # a dead owner not yet swept still has this key
            lock.unlock(key)
            continue
        lock.owner_id, lock.on_lost = owner.id, _swept
        lock.keep()
        return OwnerHandle(owner.id, name=name, kind=Owner.Kind.PROCESS, ttl_s=None, keepalive=lock)
    lock.stop()
    raise ObserversError("could not find a free owner lock key in 10 tries")


def _swept(owner_id: uuid.UUID) -> None:
    """This process's owner was swept (it was cut off from the database for longer than
    OBSERVERS_OWNER_GRACE): what it owned is gone. The next process_owner() opens a new owner, and
    process_owner_lost tells those who added observers with it (the streams close theirs)."""
    with _current_lock:
        if _current is not None and _current.id == owner_id:
            _current.closed = True
    signals.process_owner_lost.send(None, owner=owner_id)


def _in_own_connection(func: Callable[[], T]) -> T:
    """Run ``func`` on a thread of its own, so it writes on a fresh autocommit connection, outside
    whatever transaction the caller is in (a rolled-back request must not take the owner with it)."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = func()
        except BaseException as exc:
            result["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name="observers-owner")
    try:
        thread.start()
    except RuntimeError:  # at interpreter exit, where some Pythons (3.12.0 and 3.12.1) start no thread
        connections.close_all()  # nothing else runs now: this thread's own, fresh connection serves
        run()
    else:
        thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def close_process_owner(**kwargs: Any) -> None:
    """Remove this process's owner and its observers: at interpreter exit and Celery shutdowns."""
    global _current
    with _current_lock:
        owner, _current = _current, None
    if owner is not None and not owner.closed:
        _in_own_connection(owner.close)


def _forget_after_fork() -> None:
    global _current, _current_lock
    _current_lock = threading.Lock()
    if _current is not None and _current.keepalive is not None:
        _current.keepalive.detach_after_fork()
    _current = None


def connect() -> None:
    """Close this process's owner at a clean exit (pool processes and workers skip atexit), and forget
    it in a forked child (called once, from ``AppConfig.ready()``)."""
    atexit.register(close_process_owner)
    worker_process_shutdown.connect(close_process_owner, weak=False)
    worker_shutdown.connect(close_process_owner, weak=False)
    os.register_at_fork(after_in_child=_forget_after_fork)

"""Whether a variable has observers, as the notify hot path asks it: from the process's view, else
the database.

On PostgreSQL (OBSERVERS_PRESENCE_VIEW) each process that notifies keeps a view of every observed
name and pattern (``view.py``), and every add tells the live views and waits until they learned it
(``announce.py``): so the view's "no" is exact, and a name nobody observes costs no round trip.
While the view is not loaded or has lost its lease (broker or database away), the database is asked
each time, and a "no" is never cached.

Elsewhere (or with OBSERVERS_PRESENCE_VIEW off) a "no" is an absence lease (Gray and Cheriton, 1989):
it is believed for OBSERVERS_ABSENCE_TTL seconds counted from just before the database was asked,
and every add of an observer waits that long after its commit before it returns
(``wait_after_commit``). So when ``add_observer`` returns, every "no" any process on any host took
before the commit has expired. Only durations are compared, each on one host's monotonic clock; the
wait allows for clock rates.

A "yes" may be cached for OBSERVERS_PRESENCE_TTL seconds (the view keeps names until it loads
again): if it is stale, one message is sent that the worker finds no observer for (counted as
``empty_dispatches``). When the database cannot answer (it restarts), the answer is "yes": the
worker decides once it is back.
"""

import logging
import os
import time
from typing import Any

from django.db import InterfaceError, OperationalError, connection, transaction

from .. import conf
from ..models import Observer
from . import announce, view

logger = logging.getLogger(__name__)

_MAX_ENTRIES = 10_000
# Names of one add_observers call remembered as observed: a bulk add does not evict the whole cache.
REMEMBERED_ADDS = 100
# Monotonic clocks may run apart by up to 500 ppm each under NTP's slewing: the wait allows twice that.
MAX_CLOCK_RATE_ERROR = 0.001

_known: dict[str, float] = {}  # variable -> until when "it has observers" holds
_absent: dict[str, float] = {}  # variable -> until when "it has none" holds (the lease)


def has_observers(var_id: str) -> bool:
    asked_at = time.monotonic()
    expires = _known.get(var_id)
    if expires is not None and expires > asked_at:
        return True
    names = view.current()
    if names is not None:
        answer = names.answer(var_id)
        if answer is not None:
            return answer
    else:
        expires = _absent.get(var_id)
        if expires is not None and expires > asked_at:
            return False
    try:
        found = Observer.objects.any_for_variable(var_id)
    except (OperationalError, InterfaceError):
        if connection.in_atomic_block:
            raise  # the caller's own transaction is broken: theirs to handle
        # The database went away (a restart): reopen next time, and send, since a lost notification
        # is worse than one the worker finds no observer for.
        connection.close()
        logger.warning("event=presence_unknown var_id=%r reason=database", var_id, exc_info=True)
        return True
    if found:
        remember(var_id)
        return True
    _known.pop(var_id, None)
    if names is None:
        _bounded_set(_absent, var_id, asked_at + conf.absence_ttl())
    return False


def cached_answer(var_id: str) -> bool | None:
    """What ``has_observers`` would answer now without asking the database, or None when it would
    ask. Reads memory only: the event loop may call it."""
    now = time.monotonic()
    expires = _known.get(var_id)
    if expires is not None and expires > now:
        return True
    names = view.current()
    if names is not None:
        return names.answer(var_id)
    expires = _absent.get(var_id)
    if expires is not None and expires > now:
        return False
    return None


def remember(var_id: str) -> None:
    _absent.pop(var_id, None)
    _bounded_set(_known, var_id, time.monotonic() + conf.presence_ttl())


def forget(var_id: str) -> None:
    _known.pop(var_id, None)


def _bounded_set(cache: dict[str, float], var_id: str, expires: float) -> None:
    if var_id not in cache and len(cache) >= _MAX_ENTRIES:
        # Oldest insertion first: drop it, it is re-learned on its next notify.
        cache.pop(next(iter(cache)))
    cache[var_id] = expires


def adding() -> None:
    """First in an add's transaction: with views, no view registers until it ends."""
    if view.enabled():
        announce.hold_views()


def added(
    var_ids: list[str], *, glob: bool, observed: set[str], registered: list[tuple[Any, ...]] | None = None
) -> None:
    """Observers were just added on ``var_ids`` in the current transaction (``observed``: those of
    the names with another observer row of the same kind, one of them locked until the transaction
    ends; see ``observers.adds``; ``registered``: the views read by the add, as
    ``announce.live_views`` takes them): make every notify that begins after its commit see them. With
    views, this process's own learns them at once and every other live view is told now, before the
    commit, of the names that had no observer of their kind (the views were told of the others
    before that row's commit); otherwise the commit waits out the absence leases."""
    if not glob:
        for var_id in var_ids[:REMEMBERED_ADDS]:
            remember(var_id)  # answered while the view loads too
    if not view.enabled():
        wait_after_commit()
        return
    learned = set()
    own = view.existing()
    if own is not None:
        own.remember(var_ids, glob=glob)
        learned.add(str(own.id))
    new = [var_id for var_id in dict.fromkeys(var_ids) if var_id not in observed]
    if new:
        announce.announce([] if glob else new, new if glob else [], learned=learned, registered=registered)


def wait_after_commit() -> None:
    """Make the current transaction's commit wait out every absence lease taken before it: once
    per transaction, however many observers it adds (``transaction.on_commit``, so a rollback
    waits for nothing, and inside a caller's ``atomic()`` the wait comes with its commit)."""
    if not any(entry[1] is _wait_out_absence_leases for entry in connection.run_on_commit):
        transaction.on_commit(_wait_out_absence_leases)


def _wait_out_absence_leases() -> None:
    # Other processes' leases end at most a TTL (on their clocks) after the commit; local ones too.
    time.sleep(conf.absence_ttl() * (1 + MAX_CLOCK_RATE_ERROR))


def connect() -> None:
    """Stop the process's view at exit; a forked child builds its own (once, from ``AppConfig.ready()``)."""
    view.connect()
    os.register_at_fork(after_in_child=announce.reset_after_fork)

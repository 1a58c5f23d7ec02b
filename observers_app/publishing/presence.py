"""Whether a variable has observers, as the notify hot path asks it: both answers cached, the "no" as a lease.

A "yes" may be cached for OBSERVERS_PRESENCE_TTL seconds: if it is stale, one message is sent that
the worker finds no observer for (counted as ``empty_dispatches``).

A "no" (no observer of the name, globs included) is an absence lease (Gray and Cheriton, 1989): it
is believed for OBSERVERS_ABSENCE_TTL seconds counted from just before the database was asked, and
every add of an observer waits that long after its commit before it returns (``wait_after_commit``).
So when ``add_observer`` returns, every "no" any process on any host took before the commit has
expired, and a notify that begins then asks the database again and finds the observer. Only
durations are compared, each on one host's monotonic clock; the wait allows for clock rates.

When the database cannot answer (it restarts), the answer is "yes": the worker decides once it is back.
"""

import logging
import time

from django.db import InterfaceError, OperationalError, connection, transaction

from .. import conf
from ..models import Observer

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
    answer = _cached(var_id, asked_at)
    if answer is not None:
        return answer
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
    _bounded_set(_absent, var_id, asked_at + conf.absence_ttl())
    return False


def cached_answer(var_id: str) -> bool | None:
    """What ``has_observers`` would answer now without asking the database, or None when it would
    ask. Reads memory only: the event loop may call it."""
    return _cached(var_id, time.monotonic())


def _cached(var_id: str, now: float) -> bool | None:
    expires = _known.get(var_id)
    if expires is not None and expires > now:
        return True
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


def wait_after_commit() -> None:
    """Make the current transaction's commit wait out every absence lease taken before it: once
    per transaction, however many observers it adds (``transaction.on_commit``, so a rollback
    waits for nothing, and inside a caller's ``atomic()`` the wait comes with its commit)."""
    # Django keeps (savepoints, callback, robust) per callback; a rolled-back savepoint drops its own.
    if not any(entry[1] is _wait_out_absence_leases for entry in connection.run_on_commit):
        transaction.on_commit(_wait_out_absence_leases)


def _wait_out_absence_leases() -> None:
    # Other processes' leases end at most a TTL (on their clocks) after the commit; local ones too.
    time.sleep(conf.absence_ttl() * (1 + MAX_CLOCK_RATE_ERROR))

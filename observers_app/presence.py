"""Whether a variable has observers, as the notify hot path asks it: positives cached, negatives exact.

A "yes" may be cached for OBSERVERS_PRESENCE_TTL seconds: if it is stale, one message is sent that
the worker finds no observer for (counted as ``empty_dispatches``). A "no" is never cached: another
process may add an observer at any moment, and an observer whose add_observer returned before a
notify began must receive it, so a "no" always costs one indexed database round trip. When the
database cannot answer (it restarts), the answer is "yes": the worker decides once it is back.
"""

import logging
import time

from django.db import InterfaceError, OperationalError, connection

from . import conf
from .models import Observer

logger = logging.getLogger(__name__)

_MAX_ENTRIES = 10_000
_known: dict[str, float] = {}


def has_observers(var_id: str) -> bool:
    expires = _known.get(var_id)
    if expires is not None and expires > time.monotonic():
        return True
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
    return False


def remember(var_id: str) -> None:
    if len(_known) >= _MAX_ENTRIES:
        # Oldest insertion first: drop it, it is re-learned on its next notify.
        _known.pop(next(iter(_known)))
    _known[var_id] = time.monotonic() + conf.presence_ttl()


def forget(var_id: str) -> None:
    _known.pop(var_id, None)

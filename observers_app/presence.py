"""Whether a variable has observers, as the notify hot path asks it: positives cached, negatives exact.

A "yes" may be cached for OBSERVERS_PRESENCE_TTL seconds: if it is stale, one message is sent that
the worker finds no observer for (counted as ``empty_dispatches``). A "no" is never cached: another
process may add an observer at any moment, and an observer whose add_observer returned before a
notify began must receive it, so a "no" always costs one indexed database round trip.
"""

import time

from . import conf
from .models import Observer

_MAX_ENTRIES = 10_000
_known: dict[str, float] = {}


def has_observers(var_id: str) -> bool:
    expires = _known.get(var_id)
    if expires is not None and expires > time.monotonic():
        return True
    if Observer.objects.any_for_variable(var_id):
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

"""Async twins: every public function that touches the database or the broker has an ``a``-prefixed
coroutine function with the same arguments, errors and guarantees (Django's ``aget``/``asave``
convention).

A twin runs its sync function with ``sync_to_async(thread_sensitive=True)``, as Django's own twins
do: on Django's sync thread, where the database connection lives, so transactions, ``on_commit``
and the absence lease's wait behave exactly as in sync code, and the event loop waits on neither
the database nor the broker.
"""

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import AsyncToSync, sync_to_async

P = ParamSpec("P")
R = TypeVar("R")


def async_twin(func: Callable[P, R], *, thread_sensitive: bool = True) -> Callable[P, Coroutine[Any, Any, R]]:
    """The async twin of ``func``: named ``a<name>``, with its signature, running it on Django's sync
    thread (``thread_sensitive=False``: a thread of the loop's pool, for a function that waits on
    something other than the database and must not hold up the sync thread meanwhile)."""
    run = sync_to_async(func, thread_sensitive=thread_sensitive)

    @functools.wraps(func)
    async def twin(*args: P.args, **kwargs: P.kwargs) -> R:
        return await run(*args, **kwargs)

    name = func.__name__
    twin.__name__ = f"a{name}"
    twin.__qualname__ = f"{func.__qualname__.removesuffix(name)}a{name}"
    role = "meth" if "." in func.__qualname__ else "func"
    twin.__doc__ = (
        f"The async twin of :{role}:`{name}`: the same arguments, errors and guarantees, "
        "without blocking the event loop."
    )
    return twin


def under_sync_caller() -> bool:
    """Whether this coroutine runs for sync code waiting in ``async_to_sync``: its thread-sensitive
    calls then run on that caller's thread, inside whatever transaction the caller holds open."""
    return getattr(AsyncToSync.executors, "current", None) is not None

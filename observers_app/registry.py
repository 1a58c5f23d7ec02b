"""The explicit registry of observer callbacks: nothing is ever imported from a name found in data."""

from collections.abc import Callable
from typing import Any, overload

from django.utils.module_loading import autodiscover_modules

from .exceptions import UnknownCallback

Callback = Callable[[str, Any, Any, dict[str, Any]], object]

_by_name: dict[str, Callback] = {}
_names: dict[Callback, str] = {}
# The hub's own callbacks that hand a notification on to a transport (the broker, HTTP): their
# faults are the hub's, never the observer's (worker.calls).
_transports: set[str] = set()

HOW_TO_REGISTER = (
    "decorate a module-level function with @observer_callback (from observers_app.registry) "
    "in a module the worker imports too, such as callbacks.py of an installed app"
)


@overload
def observer_callback(func: Callback, /) -> Callback: ...
@overload
def observer_callback(*, name: str, transport: bool = False) -> Callable[[Callback], Callback]: ...
def observer_callback(
    func: Callback | None = None, /, *, name: str | None = None, transport: bool = False
) -> Callback | Callable[[Callback], Callback]:
    """Register ``func`` as an observer callback, named "module.qualname" unless ``name`` is given.
    ``transport=True`` is for the hub's own callbacks that hand notifications on (webhooks, streams)."""

    def register(target: Callback) -> Callback:
        registered = name or _default_name(target)
        _register(target, registered)
        if transport:
            _transports.add(registered)
        return target

    if func is None:
        return register
    return register(func)


def _default_name(func: Callback) -> str:
    qualname = getattr(func, "__qualname__", "")
    if not callable(func) or not qualname or "<" in qualname:
        raise UnknownCallback(
            f"{func!r} has no importable module-level name; {HOW_TO_REGISTER}, or pass name=..."
        )
    return f"{func.__module__}.{qualname}"


def _register(func: Callback, name: str) -> None:
    current = _by_name.get(name)
    if current is not None and current is not func:
        raise UnknownCallback(f"callback name {name!r} is already registered to {current!r}")
    _by_name[name] = func
    _names[func] = name


def name_of(callback: Callback | str) -> str:
    """The registered name of a callback given as a registered callable or a registered name."""
    if isinstance(callback, str):
        if callback in _by_name:
            return callback
        raise UnknownCallback(f"no callback is registered as {callback!r}; {HOW_TO_REGISTER}")
    try:
        return _names[callback]
    except (KeyError, TypeError):
        raise UnknownCallback(f"{callback!r} is not a registered callback; {HOW_TO_REGISTER}") from None


def lookup(name: str) -> Callback:
    """The callable registered under ``name`` in this process."""
    try:
        return _by_name[name]
    except KeyError:
        raise UnknownCallback(
            f"callback {name!r} is not registered in this process; {HOW_TO_REGISTER}"
        ) from None


def is_transport(name: str) -> bool:
    """Whether ``name`` is one of the hub's transport callbacks."""
    return name in _transports


def names() -> list[str]:
    """Every callback name registered in this process, sorted."""
    return sorted(_by_name)


def autodiscover() -> None:
    """Import the ``callbacks`` module of every installed app, registering what it decorates."""
    autodiscover_modules("callbacks")

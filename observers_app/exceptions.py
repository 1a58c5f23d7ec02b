"""The hub's named exceptions."""


class ObserversError(Exception):
    """Base class for every error the hub raises on purpose."""


class UnknownCallback(ObserversError, ValueError):
    """A callback that is neither a registered callable nor a registered name."""


class InvalidVariableId(ObserversError, ValueError):
    """A variable id that is not a non-empty string of bounded length."""


class NotSerializable(ObserversError, TypeError):
    """A value or metadata that cannot be sent as JSON."""


class PayloadTooLarge(ObserversError, ValueError):
    """A notification whose JSON form exceeds OBSERVERS_MAX_PAYLOAD_BYTES."""


class UnknownOwner(ObserversError, ValueError):
    """An owner id that names no owner."""


class OwnerClosed(ObserversError, ValueError):
    """An owner that was closed: it can own no more observers."""


class OwnerDead(ObserversError, ValueError):
    """An owner whose lease expired or whose process died."""


class TooManyObservers(ObserversError, ValueError):
    """A variable or an owner already has as many observers as its cap allows."""


class CallbackTimeout(BaseException):
    """Raised inside a callback that overran OBSERVERS_CALLBACK_TIME_LIMIT.

    A BaseException, like KeyboardInterrupt, so that a callback's own ``except Exception``
    cannot swallow it and keep running past its limit.
    """


class StreamRefused(ObserversError, PermissionError):
    """A stream the request may not open: no session or token, or not authorized for its variables."""

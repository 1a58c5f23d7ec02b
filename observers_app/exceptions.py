"""The hub's named exceptions."""


class ObserversError(Exception):
    """Base class for every error the hub raises on purpose."""


class UnknownCallback(ObserversError, ValueError):
    """A callback that is neither a registered callable nor a registered name."""


class InvalidName(ObserversError, ValueError):
    """A name that is not a non-empty string of bounded length without control characters."""


class InvalidVariableId(InvalidName):
    """A variable id (or a part of one) that is not a valid name."""


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


class InvalidArgument(ObserversError, ValueError):
    """An argument of the wrong type or out of range: a flag that is not a bool, a bad lease."""


class InvalidObserverRef(ObserversError, ValueError):
    """An observer ref that is not a UUID (or its string)."""


class UnstorableValue(ObserversError, ValueError):
    """A value holding text the database cannot store: a NUL character or a lone surrogate."""


class InvalidMessage(ObserversError, ValueError):
    """A dispatch message unlike those notify_observers sends (forged, truncated, or of an old version)."""


class CallbackTimeout(BaseException):
    """Raised inside a callback that overran OBSERVERS_CALLBACK_TIME_LIMIT.

    A BaseException, like KeyboardInterrupt, so that a callback's own ``except Exception``
    cannot swallow it and keep running past its limit.
    """


class BrokerUnavailable(ObserversError, ConnectionError):
    """The broker could not take or confirm a message now; what was being published is retried.

    ``unsent`` holds the positions, among the messages of the failed call, of those the broker did not
    confirm (it refused them, or the link failed before it said): the others it holds. None: unknown."""

    def __init__(self, message: str, *, unsent: list[int] | None = None) -> None:
        super().__init__(message)
        self.unsent = unsent


class TransientFault(ObserversError):
    """A message met the database or the broker away (or a full queue), not a fault of its own: the
    worker holds it and delivers it again later, without limit, and never counts it as poison."""


class InvalidWebhook(ObserversError, ValueError):
    """A webhook URL or signing secret that is malformed, or an OBSERVERS_WEBHOOK_* setting that is."""


class WebhookRefused(InvalidWebhook):
    """A webhook URL the SSRF guard refuses: plain http, or an address that is not public and not allowed."""


class ReplayRefused(ObserversError, ValueError):
    """A replay the hub cannot make: an unknown or quarantined observer, a point in the future, a seq
    for a glob observer, the history turned off."""


class StreamRefused(ObserversError, PermissionError):
    """A stream the request may not open: no session or token, or not authorized for its variables."""


class StreamLimitReached(StreamRefused):
    """A stream past one of its client's limits (streams per user, token or address; names per stream):
    answered 429, the reason naming the setting."""

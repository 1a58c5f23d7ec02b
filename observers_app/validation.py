"""What the hub accepts at its boundary: names, refs, owners, flags, leases, storable values."""

import json
import math
import re
import unicodedata
import uuid
from typing import Any, Protocol

from .exceptions import (
    InvalidArgument,
    InvalidMessage,
    InvalidName,
    InvalidObserverRef,
    InvalidVariableId,
    NotSerializable,
    ObserversError,
    UnknownOwner,
    UnstorableValue,
)
from .models import VAR_ID_MAX_LENGTH

# Deeper values are refused: JSON encoders, decoders and the pool's pipe all recurse per level.
MAX_DEPTH = 100
# Longest lease open_owner grants: a longer one outlives any process that could heartbeat it.
MAX_TTL_S = 7 * 24 * 3600.0
# Longest error text written for an observer (its last_error, a removal's detail).
ERROR_MAX_LENGTH = 2000
# Keys the hub adds to every callback's metadata; a caller may not send them itself.
HUB_METADATA_KEYS = frozenset(
    {"notification_id", "seq", "epoch", "observer_ref", "notified_at", "coalesced", "replayed"}
)

# One JSON escape at a time, so that an escaped backslash is never read as the start of another:
# a valid surrogate pair, a NUL or lone surrogate (captured), any other \uXXXX, any other escape.
_ESCAPE = re.compile(
    r"\\(?:ud[89ab][0-9a-f]{2}\\ud[c-f][0-9a-f]{2}|u(0000|d[89a-f][0-9a-f]{2})|u[0-9a-f]{4}|.)"
)
_CONTAINERS = (dict, list, tuple)
# Built once: json.dumps with any option builds an encoder per call, a few microseconds each.
_CANONICAL = json.JSONEncoder(sort_keys=True, allow_nan=False, separators=(",", ":"))
_STR = {str}
_SCALARS = {str, int, float, bool, type(None)}


def check_name(
    name: object,
    *,
    what: str = "var_id",
    max_length: int = VAR_ID_MAX_LENGTH,
    error: type[InvalidName] = InvalidVariableId,
    stored: bool = False,
) -> str:
    """``name`` if it is a non-empty string of at most ``max_length`` characters with no control
    character and no lone surrogate (which no database column, URL or log line shows faithfully).
    ``stored=True`` accepts those characters: a name stored before names were checked can still be
    looked up and removed."""
    if not isinstance(name, str) or not name:
        raise error(f"{what} must be a non-empty string, not {name!r:.80}")
    if len(name) > max_length:
        raise error(f"{what} is {len(name)} characters long; the limit is {max_length}")
    if not stored and not name.isprintable():  # cheap: only names failing it are looked at closely
        for position, char in enumerate(name):
            if unicodedata.category(char) in ("Cc", "Cs"):
                raise error(
                    f"{what} {name!r:.80} holds the control character {char!r} at position {position}; "
                    "names may not hold control characters (newline, tab, NUL) or lone surrogates: "
                    "remove or replace it"
                )
    return name


def check_ref(ref: object) -> uuid.UUID:
    """An observer ref as a UUID: the ``UUID`` add_observer returned, or its string."""
    if isinstance(ref, uuid.UUID):
        return ref
    try:
        return uuid.UUID(ref) if isinstance(ref, str) else uuid.UUID(str(ref))
    except (ValueError, TypeError, AttributeError):
        raise InvalidObserverRef(
            f"an observer ref is the UUID add_observer returned (or its string), not {ref!r:.80}"
        ) from None


class HasOwnerId(Protocol):
    """An owner handle (``manager.process_owner()``, ``manager.open_owner()``): anything with its id."""

    @property
    def id(self) -> uuid.UUID: ...


def owner_id(owner: HasOwnerId | uuid.UUID | str | None) -> uuid.UUID | None:
    """The owner id of an owner handle, an owner id or its string; None for no owner."""
    if owner is None:
        return None
    if isinstance(owner, uuid.UUID):
        return owner
    if isinstance(getattr(owner, "id", None), uuid.UUID):
        return owner.id  # type: ignore[union-attr]
    try:
        return uuid.UUID(str(owner))
    except ValueError:
        raise UnknownOwner(f"owner must be an owner handle or an owner id, not {owner!r}") from None


def check_flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(f"{name} must be True or False, not {value!r:.80}")
    return value


def check_ttl(ttl_s: object) -> float:
    """A lease length in seconds: a finite number above 0 and at most MAX_TTL_S."""
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float):
        raise InvalidArgument(f"ttl_s must be a number of seconds, not {ttl_s!r:.80}")
    if not math.isfinite(ttl_s) or not 0 < ttl_s <= MAX_TTL_S:
        raise InvalidArgument(
            f"ttl_s must be above 0 and at most {MAX_TTL_S:.0f} seconds (7 days), not {ttl_s!r}; "
            "heartbeat a shorter lease instead"
        )
    return float(ttl_s)


def value_json(what: str, value: Any) -> str:
    """The canonical JSON of one value (keys sorted, so equal values give equal text): what the hub
    compares to tell a change and sends. Refuses what JSON would change (non-string keys) or cannot
    hold (NaN, sets, objects), nesting deeper than MAX_DEPTH, and text the database cannot store."""
    if isinstance(value, _CONTAINERS):
        _check_shape(what, value)
    try:
        text = _CANONICAL.encode(value)
    except (TypeError, ValueError) as exc:
        raise NotSerializable(
            f"{what} cannot be sent as JSON ({exc}); use str, int, float, bool, None, list, dict"
        ) from exc
    if "\\u" in text:  # only escaped text can hide a NUL or a lone surrogate
        _check_storable(what, text)
    return text


def _check_shape(what: str, value: Any) -> None:
    """Refuse nesting deeper than MAX_DEPTH (iteratively: a recursive check would overflow on what
    it refuses) and dict keys that are not strings (JSON turns ``1`` into ``"1"``, which can collide).
    The types of a container's items are gathered in C (``set(map(type, ...))``): only containers
    holding containers cost a Python loop over their items."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise NotSerializable(
                f"{what} is nested more than {MAX_DEPTH} levels deep; flatten it or send a reference to it"
            )
        if isinstance(item, dict):
            key_kinds = set(map(type, item))
            if key_kinds != _STR and not all(issubclass(kind, str) for kind in key_kinds):
                key = next(key for key in item if not isinstance(key, str))
                raise NotSerializable(
                    f"{what} has the key {key!r:.40} of type {type(key).__name__}; JSON keys are "
                    f"strings (it would arrive as {str(key)!r:.40}, and may collide with another key): "
                    "use string keys"
                )
            children = item.values()
        else:
            children = item
        kinds = set(map(type, children))
        if not kinds <= _SCALARS and any(issubclass(kind, _CONTAINERS) for kind in kinds):
            stack.extend((child, depth + 1) for child in children if isinstance(child, _CONTAINERS))


def _check_storable(what: str, text: str) -> None:
    for match in _ESCAPE.finditer(text):
        bad = match.group(1)
        if bad == "0000":
            raise UnstorableValue(
                f"{what} holds a NUL character ('\\x00'), which PostgreSQL cannot store; "
                "strip it, or send binary data encoded (e.g. base64)"
            )
        if bad is not None:
            raise UnstorableValue(
                f"{what} holds a lone surrogate ('\\u{bad}'), which is not valid Unicode and cannot "
                "be stored or sent as UTF-8; decode its source with errors='replace' or strip it"
            )


def storable_text(text: str, *, limit: int = ERROR_MAX_LENGTH) -> str:
    """``text`` as any database stores it: NULs and lone surrogates replaced, at most ``limit``
    characters (an exception's text is whatever its raiser put in it)."""
    text = text[:limit].replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")[:limit]


def dispatch_notification(args: Any) -> dict[str, Any]:
    """The notification a dispatch message carries (``[var_id, old_value, new_value, metadata,
    notification_id, notified_at]`` and an optional ``seq``), or InvalidMessage saying what is wrong."""
    if not isinstance(args, list) or len(args) not in (6, 7):
        raise InvalidMessage(f"a dispatch message is a list of 6 or 7 arguments, not {args!r:.200}")
    var_id, old_value, new_value, metadata, notification_id, notified_at, *rest = args
    seq = rest[0] if rest else None
    try:
        check_name(var_id)
    except ObserversError as exc:
        raise InvalidMessage(f"dispatch message: {exc}") from None
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidMessage(f"dispatch message for {var_id!r}: metadata is not a dict: {metadata!r:.80}")
    if not isinstance(notification_id, str):
        raise InvalidMessage(f"dispatch message for {var_id!r}: bad notification id {notification_id!r:.80}")
    if isinstance(notified_at, bool) or not isinstance(notified_at, int | float):
        raise InvalidMessage(f"dispatch message for {var_id!r}: bad notified_at {notified_at!r:.80}")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 1):
        raise InvalidMessage(f"dispatch message for {var_id!r}: bad seq {seq!r:.80}")
    return {
        "var_id": var_id,
        "old_value": old_value,
        "new_value": new_value,
        "metadata": metadata,
        "notification_id": notification_id,
        "seq": seq,
        "notified_at": notified_at,
    }


def name_part(part: str) -> str:
    """``part`` for a name built from parts joined by ``:``: its ``%`` and ``:`` percent-escaped, so
    that no two different sets of parts make one name (``42`` + ``a:b`` against ``42:a`` + ``b``)."""
    return part.replace("%", "%25").replace(":", "%3A") if "%" in part or ":" in part else part

"""notify_observers and its async twin: the caller's side of a notification, from its values to this
process's send buffer."""

import asyncio
import json
import time
from typing import Any

from django.db import connection, transaction

from .. import aio, conf, signals, validation
from ..exceptions import InvalidArgument, NotSerializable, PayloadTooLarge
from ..wiring import DISPATCH_TASK
from . import buffer, ids, numbering, outbox, presence


def notify_observers(
    var_id: str,
    old_value: Any,
    new_value: Any,
    metadata: dict[str, Any] | None = None,
    *,
    ordered: bool = False,
    durable: bool | None = None,
) -> str | None:
    """Fan a change of ``var_id`` out to its observers; returns the notification id, or None.

    Returns at once: it leaves at most one message for this process's publishing thread (none
    when the value did not change, meaning its JSON did not: ``1 -> True`` is a change, or the
    variable has no observer) and never waits on the broker. Values and metadata the hub would
    alter or the database could not store are refused with a hub error (see ``validation``).
    Inside ``transaction.atomic()`` that happens on commit, never on rollback. ``ordered=True``
    numbers the notification (``seq``) now, in the caller's transaction, so that numbers follow
    commit order; it costs the caller one write.

    ``durable=True`` (default: OBSERVERS_DURABLE) also writes the message to the outbox table, in
    the caller's transaction (outside one, in its own before returning): once that commits, every
    observer is called at least once even if this process dies right after (a worker publishes what
    it left); rolled back, it is never sent. Callbacks deduplicate by ``metadata["notification_id"]``.
    """
    prepared = _prepare(var_id, old_value, new_value, metadata)
    if prepared is None:
        return None
    notification_id, args_json = prepared
    if ordered and presence.has_observers(var_id):
        # Numbered now, in the caller's transaction; a variable nobody observes costs no write.
        args_json = f"{args_json[:-1]},{numbering.next_seq(var_id)}]"
    durable_id = None
    if (conf.durable() if durable is None else durable) and presence.has_observers(var_id):
        outbox.write(notification_id, args_json)
        durable_id = notification_id
    if connection.in_atomic_block:
        transaction.on_commit(lambda: _publish_dispatch(var_id, args_json, durable_id), robust=True)
    else:
        _publish_dispatch(var_id, args_json, durable_id)
    return notification_id


async def anotify_observers(
    var_id: str,
    old_value: Any,
    new_value: Any,
    metadata: dict[str, Any] | None = None,
    *,
    ordered: bool = False,
    durable: bool | None = None,
) -> str | None:
    """The async twin of :func:`notify_observers`: the same arguments, errors and guarantees, without
    blocking the event loop.

    When this process already knows whether ``var_id`` has observers (its presence cache) and the call
    is neither ordered nor durable, nor inside a transaction, the notification needs neither the
    database nor the broker: it is validated and left in the send buffer right on the event loop
    (``notification_published`` is then sent there too), which it then yields to once. Otherwise
    it runs on Django's sync thread, like every async twin.
    """
    observed = presence.cached_answer(var_id)
    if (
        observed is None
        or ordered
        or (conf.durable() if durable is None else durable)
        or connection.in_atomic_block
        or aio.under_sync_caller()
    ):
        return await _notify_on_sync_thread(
            var_id, old_value, new_value, metadata, ordered=ordered, durable=durable
        )
    prepared = _prepare(var_id, old_value, new_value, metadata)
    if prepared is not None:
        _publish_dispatch(var_id, prepared[1], None, observed=observed)
    # Yield once, as the sync thread's round trip does: a coroutine notifying in a loop lets the
    # event loop's other tasks run between its calls.
    await asyncio.sleep(0)
    return None if prepared is None else prepared[0]


_notify_on_sync_thread = aio.async_twin(notify_observers)


def _prepare(
    var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any] | None
) -> tuple[str, str] | None:
    """The notification's id and its dispatch message's arguments as JSON, or None when the value did
    not change; raises the hub's errors for what it refuses."""
    validation.check_name(var_id)
    # Unchanged means the same JSON: 1 -> True and 1 -> 1.0 are changes, [1] -> (1,) is not.
    old_json = validation.value_json("old_value", old_value)
    new_json = validation.value_json("new_value", new_value)
    if old_json == new_json:
        return None
    notification_id = ids.new_id()
    return notification_id, _dispatch_args_json(var_id, old_json, new_json, metadata, notification_id)


def _publish_dispatch(
    var_id: str, args_json: str, durable_id: str | None, *, observed: bool | None = None
) -> None:
    """Hand the dispatch message to the send buffer when someone observes ``var_id`` (``observed``:
    the answer already known, else asked now)."""
    started = time.perf_counter()
    published = durable_id is not None or (presence.has_observers(var_id) if observed is None else observed)
    if published:
        # Published by this process's publishing thread: the caller never waits on the broker. One
        # broker message per call, so no "task-sent" event: the worker's task events show every
        # dispatch in Flower, and the deliver tasks it sends carry their sent events.
        buffer.send_soon(DISPATCH_TASK, args_json, durable_id=durable_id)
    signals.notification_published.send(
        None, var_id=var_id, published=published, duration_s=time.perf_counter() - started
    )


def _dispatch_args_json(
    var_id: str, old_json: str, new_json: str, metadata: dict[str, Any] | None, notification_id: str
) -> str:
    """The dispatch message's arguments as JSON, built from the values' JSON computed once."""
    if metadata is not None and not isinstance(metadata, dict):
        raise NotSerializable(f"metadata must be a dict or None, not {type(metadata).__name__}")
    reserved = validation.HUB_METADATA_KEYS.intersection(metadata or ())
    if reserved:
        raise InvalidArgument(f"metadata keys {sorted(reserved)} are reserved for the hub; rename them")
    metadata_json = validation.value_json("metadata", metadata)
    args_json = (
        f'[{json.dumps(var_id)},{old_json},{new_json},{metadata_json},"{notification_id}",{time.time()!r}]'
    )
    if len(args_json) > conf.max_payload_bytes():
        raise PayloadTooLarge(
            f"notification for {var_id!r} is {len(args_json)} bytes of JSON, over "
            f"OBSERVERS_MAX_PAYLOAD_BYTES={conf.max_payload_bytes()}; send a reference to the data instead"
        )
    return args_json

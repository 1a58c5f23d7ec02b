"""The hub's public API, and the only code that writes observers, states and counters."""

import json
import logging
import time
import uuid
from typing import Any

from django.db import connection, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from . import conf, delivery, presence, publisher, registry
from .exceptions import InvalidVariableId, NotSerializable, PayloadTooLarge
from .models import VAR_ID_MAX_LENGTH, Observer, StatCounter, VariableState
from .registry import Callback

logger = logging.getLogger(__name__)

DISPATCH_TASK = "observers.dispatch"
DELIVER_TASK = "observers.deliver"


# Observers


def add_observer(var_id: str, callback: Callback | str, *, owner: None = None) -> uuid.UUID:
    """Register ``callback`` on ``var_id``; returns the new observer's ref."""
    _check_var_id(var_id)
    name = registry.name_of(callback)
    with transaction.atomic():
        observer = Observer.objects.create(var_id=var_id, callback=name)
        _increment_counters({"observers_added": 1})
    presence.remember(var_id)
    return observer.id


def remove_observer(var_id: str, ref: uuid.UUID | str) -> bool:
    """Remove one observer; False when ``var_id`` has no observer ``ref``."""
    _check_var_id(var_id)
    with transaction.atomic():
        deleted, _ = Observer.objects.for_variable(var_id).filter(id=ref).delete()
        if deleted:
            _increment_counters({"observers_removed": deleted})
    presence.forget(var_id)
    return bool(deleted)


def observer_count(var_id: str) -> int:
    _check_var_id(var_id)
    return Observer.objects.for_variable(var_id).count()


def total_observers() -> int:
    return Observer.objects.count()


# Notifying


def notify_observers(
    var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any] | None = None
) -> str | None:
    """Fan a change of ``var_id`` out to its observers; returns the notification id, or None.

    Returns at once: the caller publishes at most one message, and none when the value did not
    change or the variable has no observer. Inside ``transaction.atomic()`` that happens on
    commit, never on rollback.
    """
    _check_var_id(var_id)
    if old_value == new_value:
        return None
    notification_id = str(uuid.uuid4())
    args_json = _serialize_dispatch_args(var_id, old_value, new_value, metadata, notification_id)
    if connection.in_atomic_block:
        transaction.on_commit(lambda: _publish_dispatch(var_id, args_json), robust=True)
    else:
        _publish_dispatch(var_id, args_json)
    return notification_id


def _publish_dispatch(var_id: str, args_json: str) -> None:
    if presence.has_observers(var_id):
        publisher.publish_task(DISPATCH_TASK, args_json)


def _serialize_dispatch_args(
    var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any] | None, notification_id: str
) -> str:
    if metadata is not None and not isinstance(metadata, dict):
        raise NotSerializable(f"metadata must be a dict or None, not {type(metadata).__name__}")
    reserved = delivery.HUB_METADATA_KEYS.intersection(metadata or ())
    if reserved:
        raise ValueError(f"metadata keys {sorted(reserved)} are reserved for the hub; rename them")
    args = [var_id, old_value, new_value, metadata, notification_id, time.time()]
    try:
        args_json = json.dumps(args, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise NotSerializable(_serialization_error(old_value, new_value, metadata, exc)) from exc
    if len(args_json) > conf.max_payload_bytes():
        raise PayloadTooLarge(
            f"notification for {var_id!r} is {len(args_json)} bytes of JSON, over "
            f"OBSERVERS_MAX_PAYLOAD_BYTES={conf.max_payload_bytes()}; send a reference to the data instead"
        )
    return args_json


def _serialization_error(old_value: Any, new_value: Any, metadata: Any, exc: Exception) -> str:
    for part, value in (("old_value", old_value), ("new_value", new_value), ("metadata", metadata)):
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as part_exc:
            return f"{part} cannot be sent as JSON ({part_exc}); use str, int, float, bool, None, list, dict"
    return f"notification cannot be sent as JSON: {exc}"


# Fan-out, run by the worker's tasks


def fan_out(
    *,
    var_id: str,
    old_value: Any,
    new_value: Any,
    metadata: dict[str, Any] | None,
    notification_id: str,
    notified_at: float,
) -> None:
    """Number the notification, send a deliver task per further page of observers, deliver the first."""
    size = conf.batch_size()
    first_page = Observer.objects.page_ids(var_id, after=None, limit=size)
    if not first_page:
        # A sender's cached "has observers" outlived the last observer.
        _increment_counters({"empty_dispatches": 1})
        return
    notification = {
        "var_id": var_id,
        "old_value": old_value,
        "new_value": new_value,
        "metadata": metadata,
        "notification_id": notification_id,
        "seq": _next_seq(var_id),
        "notified_at": notified_at,
    }
    after = first_page[-1]
    if len(first_page) == size:
        notification_json = json.dumps(notification, separators=(",", ":"))
        while page := Observer.objects.page_ids(var_id, after=after, limit=size):
            publisher.publish_task(DELIVER_TASK, f'[{notification_json},"{after}","{page[-1]}"]')
            after = page[-1]
    deliver(notification, after=None, upto=first_page[-1])


def deliver(notification: dict[str, Any], *, after: uuid.UUID | str | None, upto: uuid.UUID | str) -> None:
    """Call the observers of one page, then record the outcome in one batch of writes."""
    rows = (
        Observer.objects.for_variable(notification["var_id"])
        .in_page(after=_as_uuid(after), upto=_as_uuid(upto))
        .values_list("id", "callback", "failures")
    )
    outcome = delivery.call_observers(rows, notification, time_limit=conf.callback_time_limit())
    with transaction.atomic():
        if outcome.failed:
            _record_failures(outcome.failed)
        if outcome.recovered:
            Observer.objects.filter(id__in=outcome.recovered).update(failures=0)
        _increment_counters(
            {"notifications_sent": outcome.called, "notifications_failed": len(outcome.failed)}
        )


def _as_uuid(value: uuid.UUID | str | None) -> uuid.UUID | None:
    return uuid.UUID(str(value)) if value is not None else None


def _record_failures(failed: dict[uuid.UUID, str]) -> None:
    errors = [When(id=ref, then=Value(error)) for ref, error in failed.items()]
    Observer.objects.filter(id__in=list(failed)).update(
        failures=F("failures") + 1, last_error=Case(*errors), last_failed_at=timezone.now()
    )


def _next_seq(var_id: str) -> int:
    """Advance and return the variable's sequence number in one round trip."""
    table = connection.ops.quote_name(VariableState._meta.db_table)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (var_id, seq, last_notified_at) VALUES (%s, 1, %s) "  # noqa: S608
            f"ON CONFLICT (var_id) DO UPDATE SET seq = {table}.seq + 1, "
            "last_notified_at = excluded.last_notified_at RETURNING seq",
            [var_id, now],
        )
        row = cursor.fetchone()
    return int(row[0])


def _increment_counters(counts: dict[str, int]) -> None:
    """Add to global counters in one statement; the hub writes counters per batch, never per callback."""
    counts = {name: n for name, n in counts.items() if n}
    if not counts:
        return
    table = connection.ops.quote_name(StatCounter._meta.db_table)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    rows = ", ".join(["(%s, %s, %s)"] * len(counts))
    params: list[Any] = []
    for name, n in counts.items():
        params += [name, n, now]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (name, value, created_at) VALUES {rows} "  # noqa: S608
            f"ON CONFLICT (name) DO UPDATE SET value = {table}.value + excluded.value",
            params,
        )


# Introspection

STAT_COUNTERS = (
    "observers_added",
    "observers_removed",
    "notifications_sent",
    "notifications_failed",
    "cleanup_runs",
    "empty_dispatches",
)


def get_stats() -> dict[str, int]:
    """Global figures: counters shared by all processes plus live counts; see README for each key."""
    rows = list(StatCounter.objects.values_list("name", "value", "created_at"))
    stats = dict.fromkeys(STAT_COUNTERS, 0)
    stats.update({name: value for name, value, _ in rows})
    started = min((created for _, _, created in rows), default=timezone.now())
    stats["active_observers"] = total_observers()
    stats["monitored_processes"] = 0
    stats["uptime_ms"] = int((timezone.now() - started).total_seconds() * 1000)
    return stats


def inspect_variable(var_id: str, *, limit: int = 1000) -> dict[str, Any]:
    """The variable's observers (at most ``limit``, oldest first) and their health."""
    _check_var_id(var_id)
    now = timezone.now()
    state = VariableState.objects.filter(var_id=var_id).first()
    last_notified = state.last_notified_at if state else None
    observers = Observer.objects.for_variable(var_id).order_by("created_at", "id")[:limit]
    return {
        "var_id": var_id,
        "observer_count": observer_count(var_id),
        "seq": state.seq if state else 0,
        "observers": [
            {
                "ref": observer.id,
                "callback": observer.callback,
                "owner": None,
                "alive": True,
                "age_ms": int((now - observer.created_at).total_seconds() * 1000),
                "failures": observer.failures,
                "last_error": observer.last_error,
                # The variable's latest fan-out reached every observer that existed then.
                "last_notified_at": last_notified
                if last_notified and last_notified >= observer.created_at
                else None,
            }
            for observer in observers
        ],
    }


def _check_var_id(var_id: object) -> None:
    if not isinstance(var_id, str) or not var_id:
        raise InvalidVariableId(f"var_id must be a non-empty string, not {var_id!r}")
    if len(var_id) > VAR_ID_MAX_LENGTH:
        raise InvalidVariableId(f"var_id is {len(var_id)} characters long; the limit is {VAR_ID_MAX_LENGTH}")

"""The hub's public API, and the code that writes observers, owners and removals."""

import collections
import json
import logging
import time
import uuid
from collections.abc import Iterable
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from . import (
    backpressure,
    calls,
    conf,
    counters,
    dispatch,
    events,
    liveness,
    outbox,
    owners,
    presence,
    registry,
    removals,
    sender,
    validation,
)
from .exceptions import (
    InvalidArgument,
    InvalidName,
    NotSerializable,
    PayloadTooLarge,
    TooManyObservers,
    UnknownOwner,
)
from .liveness import OwnerHandle
from .models import DeadLetter, Observer, Owner, Removal, VariableState, WebhookEndpoint
from .registry import Callback
from .removals import sweep as sweep  # the public API, implemented with the removals
from .removals import sweep_dead_observers as sweep_dead_observers
from .webhooks import guard, messages, signing
from .wiring import DISPATCH_TASK

Reason = Removal.Reason
# Observer rows per INSERT of add_observers.
BULK_ROWS = 2000
logger = logging.getLogger(__name__)


# Observers


def add_observer(
    var_id: str,
    callback: Callback | str,
    *,
    owner: OwnerHandle | uuid.UUID | str | None = None,
    glob: bool = False,
    coalesce: bool = False,
) -> uuid.UUID:
    """Register ``callback`` on ``var_id``, durable or bound to a live ``owner``; returns its ref.

    With ``glob=True``, ``var_id`` is a pattern (``*`` matches any run of characters) and the
    callback receives the concrete name of each matching variable that changes. With
    ``coalesce=True``, latest value wins: notifications that come faster than the observer is
    delivered collapse into the newest (``old_value`` the last value it was given).

    Every notify that begins after it returns, in any process, reaches the observer: it returns
    OBSERVERS_ABSENCE_TTL seconds after its commit, once every process's cached "no observer" has
    expired. Inside ``transaction.atomic()`` it returns at once and the commit takes that long.
    To register many, ``add_observers`` pays the wait once.
    """
    return add_observers([var_id], callback, owner=owner, glob=glob, coalesce=coalesce)[0]


def add_observers(
    var_ids: Iterable[str],
    callback: Callback | str,
    *,
    owner: OwnerHandle | uuid.UUID | str | None = None,
    glob: bool = False,
    coalesce: bool = False,
) -> list[uuid.UUID]:
    """Register ``callback`` once on each of ``var_ids`` (names, or patterns with ``glob=True``)
    in one transaction, with the caps of ``add_observer`` and its wait paid once; returns the refs
    in the order of ``var_ids``. All or none: past a cap, TooManyObservers and nothing is added."""
    var_ids = list(var_ids)
    for var_id in var_ids:
        validation.check_name(var_id)
    validation.check_flag("glob", glob)
    validation.check_flag("coalesce", coalesce)
    name = registry.name_of(callback)
    if not var_ids:
        return []
    owner_id = _owner_id(owner)
    with transaction.atomic():
        if owner_id is not None:
            owners.lock_live_owner(owner_id)
            if Observer.objects.filter(owner_id=owner_id).count() + len(var_ids) > conf.max_per_owner():
                raise TooManyObservers(
                    f"owner {owner_id} would have more than OBSERVERS_MAX_PER_OWNER={conf.max_per_owner()} "
                    "observers"
                )
        counts = counters.count_more_observers(collections.Counter(var_ids))
        over = sorted(var_id for var_id, count in counts.items() if count > conf.max_per_variable())
        if over:
            raise TooManyObservers(
                f"{over[0]!r} already has OBSERVERS_MAX_PER_VARIABLE={conf.max_per_variable()} observers; "
                "observe a glob or raise the cap"
            )
        refs = _insert_observers(var_ids, name, owner_id=owner_id, glob=glob, coalesce=coalesce)
        counters.increment({"observers_added": len(refs)})
        transaction.on_commit(lambda: _send_added(refs, var_ids, name, owner_id))
        presence.wait_after_commit()
    if not glob:
        for var_id in var_ids[: presence.REMEMBERED_ADDS]:
            presence.remember(var_id)
    return refs


def _insert_observers(
    var_ids: list[str], callback: str, *, owner_id: uuid.UUID | None, glob: bool, coalesce: bool
) -> list[uuid.UUID]:
    """Insert one observer row per name; returns their ids. On PostgreSQL one statement over two
    arrays (10,000 rows: Django's bulk_create spends ~1 s preparing its 110,000 values here)."""
    refs = [uuid.uuid4() for _ in var_ids]
    if connection.vendor != "postgresql":
        Observer.objects.bulk_create(
            [
                Observer(
                    id=ref,
                    var_id=var_id,
                    is_glob=glob,
                    coalesce=coalesce,
                    callback=callback,
                    owner_id=owner_id,
                )
                for ref, var_id in zip(refs, var_ids, strict=True)
            ],
            batch_size=BULK_ROWS,
        )
        return refs
    table = connection.ops.quote_name(Observer._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (id, var_id, is_glob, callback, created_at, failures, last_error, "
            '"coalesce", owner_id) '
            "SELECT unnest(%s::uuid[]), unnest(%s::varchar[]), %s, %s, %s, 0, '', %s, %s::uuid",
            [refs, var_ids, glob, callback, timezone.now(), coalesce, owner_id],
        )
    return refs


def _send_added(refs: list[uuid.UUID], var_ids: list[str], callback: str, owner: uuid.UUID | None) -> None:
    for ref, var_id in zip(refs, var_ids, strict=True):
        events.observer_added.send(None, ref=ref, var_id=var_id, callback=callback, owner=owner)


class WebhookRef(uuid.UUID):
    """A webhook observer's ref (a UUID, usable wherever a ref is) that also carries ``secret``, its
    ``whsec_`` signing secret: the only time the hub shows it (the admin never does)."""

    secret: str

    def __init__(self, ref: uuid.UUID, secret: str) -> None:
        super().__init__(int=ref.int)
        object.__setattr__(self, "secret", secret)


def add_webhook(
    var_id: str,
    url: str,
    *,
    glob: bool = False,
    secret: str | None = None,
    owner: OwnerHandle | uuid.UUID | str | None = None,
) -> WebhookRef:
    """Observe ``var_id`` (a pattern with ``glob=True``) with an HTTP endpoint: each notification is
    POSTed to ``url`` as signed JSON (Standard Webhooks), retried, and the endpoint disabled when it
    keeps failing; see docs/webhooks.md. Returns its ref, whose ``secret`` is the signing secret
    (``secret`` if given, else a new one). Remove it with ``remove_observer``.

    Raises WebhookRefused for a URL the SSRF guard refuses (plain http, a non-public address not in
    OBSERVERS_WEBHOOK_ALLOW), InvalidWebhook for a malformed URL or secret."""
    validation.check_name(var_id)
    guard.check_url(url)
    secret = signing.new_secret() if secret is None else signing.check_secret(secret)
    with transaction.atomic():
        ref = add_observer(var_id, messages.WEBHOOK_CALLBACK, owner=owner, glob=glob)
        WebhookEndpoint.objects.create(observer_id=ref, url=url, secret=secret)
    return WebhookRef(ref, secret)


def send_test_webhook(ref: uuid.UUID | str) -> bool:
    """POST a signed ``webhook.test`` message to webhook observer ``ref`` (after commit); False if
    ``ref`` is not a webhook observer."""
    var_id = Observer.objects.filter(id=ref, webhook__isnull=False).values_list("var_id", flat=True).first()
    if var_id is None:
        return False
    payload = messages.body(messages.TEST, var_id, None, "test", {"observer_ref": str(ref)})
    message_id = f"msg_{uuid.uuid4().hex}"
    transaction.on_commit(lambda: messages.enqueue(str(ref), message_id, payload, attempt=1))
    return True


def remove_observer(var_id: str, ref: uuid.UUID | str) -> bool:
    """Remove one observer; False when ``var_id`` has no observer ``ref``."""
    validation.check_name(var_id, stored=True)  # one stored before names were checked can still go
    ref = validation.check_ref(ref)
    removed = removals.remove_in_batches(Observer.objects.for_variable(var_id).filter(id=ref), Reason.REMOVED)
    presence.forget(var_id)
    return bool(removed)


def observer_count(var_id: str) -> int:
    """Observers a notification of ``var_id`` would call now: its own and those of matching globs,
    not quarantined, durable or with a live owner."""
    validation.check_name(var_id)
    return Observer.objects.live().matching(var_id, Observer.objects.globs_matching(var_id)).count()


def total_observers() -> int:
    return Observer.objects.live().count()


def reenable_observer(ref: uuid.UUID | str) -> bool:
    """Take an observer out of quarantine; one more failure puts it back (a webhook starts counting
    its failures afresh). False if not quarantined."""
    ref = validation.check_ref(ref)
    with transaction.atomic():
        updated = Observer.objects.filter(id=ref, quarantined_at__isnull=False).update(
            quarantined_at=None, failures=conf.quarantine_after() - 1
        )
        WebhookEndpoint.objects.filter(observer_id=ref).update(failures=0, failing_since=None)
    counters.increment({"observers_reenabled": updated})
    return bool(updated)


def removal_of(ref: uuid.UUID | str) -> dict[str, Any] | None:
    """Why and when observer ``ref`` last went away (removed or quarantined), or None."""
    ref = validation.check_ref(ref)
    removal = Removal.objects.filter(observer_ref=ref).order_by("-removed_at", "-id").first()
    if removal is None:
        return None
    return {
        "ref": removal.observer_ref,
        "var_id": removal.var_id,
        "callback": removal.callback,
        "owner": removal.owner_ref,
        "reason": removal.reason,
        "detail": removal.detail,
        "removed_at": removal.removed_at,
    }


# Owners


def process_owner() -> OwnerHandle:
    """This process's owner: created on first use, alive while the process lives."""
    return liveness.process_owner()


def open_owner(name: str, *, ttl_s: float = 30.0) -> OwnerHandle:
    """A lease for something shorter-lived than a process; alive while heartbeated within ``ttl_s``."""
    validation.check_name(name, what="owner name", error=InvalidName)
    ttl_s = validation.check_ttl(ttl_s)
    owner = owners.create_owner(name=name, kind=Owner.Kind.LEASE, ttl_s=ttl_s)
    return OwnerHandle(owner.id, name=name, kind=Owner.Kind.LEASE, ttl_s=ttl_s)


def _owner_id(owner: OwnerHandle | uuid.UUID | str | None) -> uuid.UUID | None:
    if owner is None:
        return None
    if isinstance(owner, OwnerHandle):
        return owner.id
    try:
        return uuid.UUID(str(owner))
    except ValueError:
        raise UnknownOwner(f"owner must be an owner handle or an owner id, not {owner!r}") from None


# Notifying


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
    validation.check_name(var_id)
    # Unchanged means the same JSON: 1 -> True and 1 -> 1.0 are changes, [1] -> (1,) is not.
    old_json = validation.value_json("old_value", old_value)
    new_json = validation.value_json("new_value", new_value)
    if old_json == new_json:
        return None
    notification_id = str(uuid.uuid4())
    args_json = _dispatch_args_json(var_id, old_json, new_json, metadata, notification_id)
    if ordered and presence.has_observers(var_id):
        # Numbered now, in the caller's transaction; a variable nobody observes costs no write.
        args_json = f"{args_json[:-1]},{dispatch.next_seq(var_id)}]"
    durable_id = None
    if (conf.durable() if durable is None else durable) and presence.has_observers(var_id):
        outbox.write(notification_id, args_json)
        durable_id = notification_id
    if connection.in_atomic_block:
        transaction.on_commit(lambda: _publish_dispatch(var_id, args_json, durable_id), robust=True)
    else:
        _publish_dispatch(var_id, args_json, durable_id)
    return notification_id


def _publish_dispatch(var_id: str, args_json: str, durable_id: str | None) -> None:
    started = time.perf_counter()
    published = durable_id is not None or presence.has_observers(var_id)
    if published:
        # Published by this process's publishing thread: the caller never waits on the broker. One
        # broker message per call, so no "task-sent" event: the worker's task events show every
        # dispatch in Flower, and the deliver tasks it sends carry their sent events.
        sender.send_soon(DISPATCH_TASK, args_json, durable_id=durable_id)
    events.notification_published.send(
        None, var_id=var_id, published=published, duration_s=time.perf_counter() - started
    )


def _dispatch_args_json(
    var_id: str, old_json: str, new_json: str, metadata: dict[str, Any] | None, notification_id: str
) -> str:
    """The dispatch message's arguments as JSON, built from the values' JSON computed once."""
    if metadata is not None and not isinstance(metadata, dict):
        raise NotSerializable(f"metadata must be a dict or None, not {type(metadata).__name__}")
    reserved = calls.HUB_METADATA_KEYS.intersection(metadata or ())
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


# Introspection


def get_stats() -> dict[str, int]:
    """Global figures: counters shared by all processes plus live counts (docs/how-it-works.md)."""
    stats, uptime_ms = counters.read()
    stats["active_observers"] = total_observers()
    stats["monitored_processes"] = Owner.objects.alive().count()
    stats["queue_backlog"] = backpressure.dispatch_backlog()
    stats["dead_letters"] = DeadLetter.objects.count()
    stats["uptime_ms"] = uptime_ms
    return stats


def inspect_variable(var_id: str, *, limit: int = 1000) -> dict[str, Any]:
    """The variable's observers (at most ``limit``, oldest first) and their health."""
    validation.check_name(var_id)
    now = timezone.now()
    state = VariableState.objects.filter(var_id=var_id).first()
    last_notified = state.last_notified_at if state else None
    observers = list(
        Observer.objects.matching(var_id, Observer.objects.globs_matching(var_id))
        .select_related("owner")
        .order_by("created_at", "id")[:limit]
    )
    owner_ids = {observer.owner_id for observer in observers if observer.owner_id}
    alive_owners = set(Owner.objects.alive().filter(id__in=owner_ids).values_list("id", flat=True))
    endpoints = _webhook_endpoints([o.id for o in observers if o.callback == messages.WEBHOOK_CALLBACK])
    return {
        "var_id": var_id,
        "observer_count": observer_count(var_id),
        "seq": state.seq if state else 0,
        "observers": [
            {
                "ref": observer.id,
                "callback": observer.callback,
                # Why it is here: registered on this exact name, or on a glob that matches it.
                "match": "glob" if observer.is_glob else "exact",
                "pattern": observer.var_id if observer.is_glob else None,
                "owner": observer.owner_id,
                "owner_name": observer.owner.name if observer.owner else None,
                "alive": observer.owner_id is None or observer.owner_id in alive_owners,
                "quarantined": observer.quarantined_at is not None,
                "age_ms": int((now - observer.created_at).total_seconds() * 1000),
                # A webhook's failures are its endpoint's (its callback only queues the POST).
                "failures": endpoints[observer.id][1] if observer.id in endpoints else observer.failures,
                "webhook_url": endpoints[observer.id][0] if observer.id in endpoints else None,
                "last_error": observer.last_error,
                # The variable's latest fan-out reached every observer that existed then.
                "last_notified_at": last_notified
                if last_notified and last_notified >= observer.created_at
                else None,
            }
            for observer in observers
        ],
    }


def _webhook_endpoints(refs: list[uuid.UUID]) -> dict[uuid.UUID, tuple[str, int]]:
    """The URL and failures in a row of the webhook observers ``refs``."""
    rows = WebhookEndpoint.objects.filter(observer_id__in=refs).values_list("observer_id", "url", "failures")
    return {ref: (url, failures) for ref, url, failures in rows}

"""Adding observers: the caps, one insert for many, and the wait that makes every later notify see them."""

import collections
import uuid
from collections.abc import Iterable
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from .. import aio, conf, registry, signals, validation
from ..db import prepared_pipeline, prepared_rows
from ..exceptions import TooManyObservers
from ..models import PRESENCE_LOCK, Observer, Owner, StatCounter, VariableState
from ..publishing import announce, presence, view
from ..registry import Callback
from ..telemetry import counters
from ..validation import HasOwnerId

# Observer rows per INSERT of add_observers.
BULK_ROWS = 2000


def add_observer(
    var_id: str,
    callback: Callback | str,
    *,
    owner: HasOwnerId | uuid.UUID | str | None = None,
    glob: bool = False,
    coalesce: bool = False,
) -> uuid.UUID:
    """Register ``callback`` on ``var_id``, durable or bound to a live ``owner``; returns its ref.

    With ``glob=True``, ``var_id`` is a pattern (``*`` matches any run of characters) and the
    callback receives the concrete name of each matching variable that changes. With
    ``coalesce=True``, latest value wins: notifications that come faster than the observer is
    delivered collapse into the newest (``old_value`` the last value it was given).

    Every notify that begins after it returns, in any process, reaches the observer: before its
    commit it waits until every process's view has learned a name that had no observer, or can no
    longer answer "no observer" (without views, it waits OBSERVERS_ABSENCE_TTL seconds after its
    commit: inside ``transaction.atomic()``, the commit waits). ``add_observers`` waits once.
    """
    return add_observers([var_id], callback, owner=owner, glob=glob, coalesce=coalesce)[0]


aadd_observer = aio.async_twin(add_observer)


def add_observers(
    var_ids: Iterable[str],
    callback: Callback | str,
    *,
    owner: HasOwnerId | uuid.UUID | str | None = None,
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
    owner_id = validation.owner_id(owner)
    postgresql = connection.vendor == "postgresql"
    with transaction.atomic():
        if owner_id is not None:  # without an owner, the add's statement takes the views' lock itself
            presence.adding()
            Owner.objects.lock_live(owner_id)
            if Observer.objects.filter(owner_id=owner_id).count() + len(var_ids) > conf.max_per_owner():
                raise TooManyObservers(
                    f"owner {owner_id} would have more than OBSERVERS_MAX_PER_OWNER={conf.max_per_owner()} "
                    "observers"
                )
        if postgresql:  # inserted as counted: past a cap, the raise below rolls the rows back
            views = view.enabled()
            refs, counts, observed, registered = _insert_counted(
                var_ids, name, owner_id=owner_id, glob=glob, coalesce=coalesce, views=views
            )
        else:
            counts = counters.count_more_observers(collections.Counter(var_ids))
            observed, registered = set(), None
        over = sorted(var_id for var_id, count in counts.items() if count > conf.max_per_variable())
        if over:
            raise TooManyObservers(
                f"{over[0]!r} already has OBSERVERS_MAX_PER_VARIABLE={conf.max_per_variable()} observers; "
                "observe a glob or raise the cap"
            )
        if not postgresql:
            refs = _bulk_create(var_ids, name, owner_id=owner_id, glob=glob, coalesce=coalesce)
            counters.increment({"observers_added": len(refs)})
        transaction.on_commit(lambda: _send_added(refs, var_ids, name, owner_id))
        presence.added(var_ids, glob=glob, observed=observed, registered=registered)
    return refs


aadd_observers = aio.async_twin(add_observers)


def _bulk_create(
    var_ids: list[str], callback: str, *, owner_id: uuid.UUID | None, glob: bool, coalesce: bool
) -> list[uuid.UUID]:
    """Insert one observer row per name (off PostgreSQL); returns their ids."""
    refs = [uuid.uuid4() for _ in var_ids]
    created_at = timezone.now()  # one time for the rows of one add, as one statement gives them
    Observer.objects.bulk_create(
        [
            Observer(
                id=ref,
                var_id=var_id,
                is_glob=glob,
                coalesce=coalesce,
                callback=callback,
                owner_id=owner_id,
                created_at=created_at,
            )
            for ref, var_id in zip(refs, var_ids, strict=True)
        ],
        batch_size=BULK_ROWS,
    )
    return refs


def _insert_counted(
    var_ids: list[str], callback: str, *, owner_id: uuid.UUID | None, glob: bool, coalesce: bool, views: bool
) -> tuple[list[uuid.UUID], dict[str, int], set[str], list[tuple[Any, ...]] | None]:
    """On PostgreSQL, one statement over arrays however many names (where Django's bulk_create would
    bind eleven parameters per row): it adds to the names' observer counts, taking their rows in name
    order like every other writer of them (locked until commit), inserts one observer row per name
    and adds to the counter. Returns the refs, in the order of ``var_ids``, the names' observer
    counts now, and (with ``views``) the names already observed and the registered views.

    With ``views`` the statement first takes PRESENCE_LOCK shared, before any row lock (the CTEs
    read from ``held``, which the executor runs first), unless the owner's check took it already
    (``presence.adding``); and two more statements, sent with it in one round trip, find the names
    with another observer row of the same kind and read the registered views (after the lock, so no
    view registers unseen: ``announce.views_statement``). The views were told of each name already
    observed before that row's commit. One such row per name is locked (KEY SHARE) until the
    transaction ends, so that a view loading meanwhile still finds it: otherwise its removal could
    commit first, and the view read neither it nor this add's uncommitted row. It comes after every
    lock the add waits for,
    and skips rows another transaction holds (a removal) instead of waiting: an add holding such a
    row never waits, so it cannot deadlock with a transaction that removes it."""
    refs = [uuid.uuid4() for _ in var_ids]
    added = collections.Counter(var_ids)
    names = sorted(added)
    now = timezone.now()  # one time for the rows of one add
    quote = connection.ops.quote_name
    states, observers = quote(VariableState._meta.db_table), quote(Observer._meta.db_table)
    stats = quote(StatCounter._meta.db_table)
    hold = views and owner_id is None
    held, after = ("held AS (SELECT pg_advisory_xact_lock_shared(%s, %s)), ", "held, ") if hold else ("", "")
    write = (
        f"WITH {held}counted AS (INSERT INTO {states} (var_id, observer_count) "  # noqa: S608
        f"SELECT name, n FROM {after}unnest(%s::varchar[], %s::bigint[]) AS given (name, n) "
        "ON CONFLICT (var_id) DO UPDATE SET observer_count = "
        f"{states}.observer_count + excluded.observer_count "
        "RETURNING var_id, observer_count), "
        f"inserted AS (INSERT INTO {observers} (id, var_id, is_glob, callback, created_at, failures, "
        "last_error, \"coalesce\", owner_id) SELECT id, name, %s, %s, %s, 0, '', %s, %s::uuid "
        f"FROM {after}unnest(%s::uuid[], %s::varchar[]) AS given (id, name)), "
        f"totals AS (INSERT INTO {stats} (name, value, created_at) VALUES ('observers_added', %s, %s) "
        f"ON CONFLICT (name) DO UPDATE SET value = {stats}.value + excluded.value) "
        "SELECT var_id, observer_count FROM counted",
        [
            *(PRESENCE_LOCK if hold else ()),
            names,
            [added[name] for name in names],
            glob,
            callback,
            now,
            coalesce,
            owner_id,
            refs,
            var_ids,
            len(refs),
            now,
        ],
    )
    if not views:
        return refs, {var_id: int(count) for var_id, count in prepared_rows(connection, *write)}, set(), None
    known = (
        "SELECT name FROM unnest(%s::varchar[]) AS names (name) CROSS JOIN LATERAL "  # noqa: S608
        f"(SELECT 1 FROM {observers} WHERE var_id = names.name AND is_glob = %s AND NOT (id = ANY(%s)) "
        "LIMIT 1 FOR KEY SHARE SKIP LOCKED) AS other",
        [names, glob, refs],
    )
    counted, observed, registered = prepared_pipeline(connection, [write, known, announce.views_statement()])
    counts = {var_id: int(count) for var_id, count in counted}
    return refs, counts, {name for (name,) in observed}, registered


def _send_added(refs: list[uuid.UUID], var_ids: list[str], callback: str, owner: uuid.UUID | None) -> None:
    for ref, var_id in zip(refs, var_ids, strict=True):
        signals.observer_added.send(None, ref=ref, var_id=var_id, callback=callback, owner=owner)

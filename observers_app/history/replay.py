"""Replay: the kept history of a variable sent again to one observer (a callback or a webhook endpoint).

The caller's side: the request is checked here (a clear error at the boundary), the range to send is
fixed now (what is notified later reaches the observer live), and one ``observers.replay`` message is
published per variable, naming its run of seqs. A worker delivers it through the normal path
(``worker.replaying``), a page at a time, each page's message publishing the next one (so a variable's
notifications reach the observer in seq order): the callback isolated and timed, a webhook's POST
signed and retried, every notification with its original id.
"""

import dataclasses
import json
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime

from django.db.models import Count, Max, Min
from django.utils import timezone

from .. import aio, conf, registry, validation
from ..exceptions import BrokerUnavailable, ReplayRefused
from ..globs import glob_matches
from ..models import HistoryEntry, Observer, VariableState, WebhookEndpoint
from ..publishing import broker, outbox
from ..wiring import REPLAY_TASK

# Variables of a glob observer's history read per statement, and messages published per confirm.
VARIABLES_PER_READ = 500


@dataclasses.dataclass(frozen=True)
class Replayed:
    """What ``replay`` queued: ``notifications`` kept entries, over ``variables`` variables.
    ``complete`` is False when the history may not reach back to ``since`` (entries before the oldest
    kept one were pruned or lost): what it still kept was queued."""

    observer_ref: uuid.UUID
    notifications: int
    variables: int
    complete: bool


def replay(ref: uuid.UUID | str, *, since: int | datetime) -> Replayed:
    """Send the kept history to observer ``ref`` (a callback observer's ref, or a webhook's) and to no
    other, from ``since`` to now: a seq of its variable (that notification and the later ones) or an
    aware datetime (the notifications at or after it). A glob observer spans many variables, each
    numbered on its own, so it takes a datetime only. Delivered by the workers like any notification,
    with its original id (a webhook's ``webhook-id`` too) and ``replayed: True`` in its metadata;
    counted in ``history_replayed``.

    Raises ReplayRefused for an unknown ref, a quarantined observer or one whose owner is dead (re-enable
    it first), a stream's observer, a point in the future, a seq for a glob observer, a naive datetime,
    or the history turned off; BrokerUnavailable never: what the broker does not take now waits in the
    outbox for the workers to publish."""
    ref = validation.check_ref(ref)
    if not conf.history():
        raise ReplayRefused("the history is off (OBSERVERS_HISTORY = False): there is nothing to replay")
    observer = _replayable(ref)
    runs: Iterable[Run]
    if observer.is_glob:
        if not isinstance(since, datetime):
            raise ReplayRefused(
                f"observer {ref} watches the glob {observer.var_id!r}: its variables are numbered each on "
                "its own, so a seq names no point for it; give since as a datetime"
            )
        runs, complete = _glob_runs(observer.var_id, _check_time(since)), True
    else:
        runs, complete = _variable_runs(observer.var_id, since)
    notifications = 0
    variables: set[str] = set()
    messages: list[tuple[str, str]] = []
    for (var_id, first, last, entries), covered in runs:
        notifications += entries
        complete = complete and covered
        variables.add(var_id)
        messages.append(replay_message(ref, var_id, first, last))
        if len(messages) == VARIABLES_PER_READ:
            publish(messages)
            messages = []
    publish(messages)
    return Replayed(ref, notifications=notifications, variables=len(variables), complete=complete)


areplay = aio.async_twin(replay)


def _replayable(ref: uuid.UUID) -> Observer:
    observer = Observer.objects.filter(id=ref).first()
    if observer is None:
        raise ReplayRefused(f"no observer has the ref {ref} (removed? see manager.removal_of)")
    if observer.quarantined_at is not None:
        raise ReplayRefused(
            f"observer {ref} is quarantined (a disabled webhook): re-enable it first, then replay"
        )
    if not Observer.objects.live().filter(id=ref).exists():
        raise ReplayRefused(f"observer {ref} belongs to an owner that is dead: it gets no notification")
    if registry.is_transport(observer.callback) and observer.callback != WebhookEndpoint.CALLBACK:
        raise ReplayRefused(
            f"observer {ref} forwards to streams ({observer.callback}): a stream resumes by itself "
            "(Last-Event-ID); replay a callback observer or a webhook"
        )
    return observer


def _check_time(since: datetime) -> datetime:
    if timezone.is_naive(since):
        raise ReplayRefused(f"since={since.isoformat()} has no time zone: give an aware datetime")
    if since > timezone.now():
        raise ReplayRefused(f"since={since.isoformat()} is in the future: nothing was notified after it yet")
    return since


# A variable's run of seqs to send: (var_id, first seq, last seq, entries kept in it), and whether the
# variable's history reaches back to the replay's point.
Run = tuple[tuple[str, int, int, int], bool]


def _variable_runs(var_id: str, since: int | datetime) -> tuple[list[Run], bool]:
    """The runs of one variable's kept entries from ``since`` (checked first), and whether its history
    reaches back to it."""
    kept = HistoryEntry.objects.filter(var_id=var_id)
    if isinstance(since, datetime):
        bounds = kept.filter(at__gte=_check_time(since)).aggregate(
            first=Min("seq"), last=Max("seq"), entries=Count("seq")
        )
        oldest = kept.order_by("seq").values_list("seq", "at").first()
        # Pruned entries were older than the oldest kept: the history covers since when it is older.
        complete = oldest is None or oldest[0] <= 1 or oldest[1] < since
    else:
        if isinstance(since, bool) or not isinstance(since, int):
            raise ReplayRefused(f"since is a seq (an int) or a datetime, not {since!r:.80}")
        last_seq = VariableState.objects.filter(var_id=var_id).values_list("seq", flat=True).first() or 0
        if since < 1:
            raise ReplayRefused(f"since={since} is no seq: a variable's seqs start at 1")
        if since > last_seq:
            raise ReplayRefused(f"since={since} is in the future: the last seq of {var_id!r} is {last_seq}")
        bounds = kept.filter(seq__gte=since).aggregate(
            first=Min("seq"), last=Max("seq"), entries=Count("seq")
        )
        complete = bounds["first"] == since
    if bounds["first"] is None:
        return [], complete
    return [((var_id, bounds["first"], bounds["last"], bounds["entries"]), complete)], complete


def _glob_runs(pattern: str, since: datetime) -> Iterator[Run]:
    """The runs of every variable matching ``pattern`` with entries at or after ``since``, read by
    variable name in bounded batches (the prefix before the first ``*`` narrows the read)."""
    prefix = pattern.split("*", 1)[0]
    after = ""
    while True:
        batch = list(
            HistoryEntry.objects.filter(var_id__startswith=prefix, var_id__gt=after, at__gte=since)
            .values("var_id")
            .annotate(first=Min("seq"), last=Max("seq"), entries=Count("seq"))
            .order_by("var_id")
            .values_list("var_id", "first", "last", "entries")[:VARIABLES_PER_READ]
        )
        for var_id, first, last, entries in batch:
            if glob_matches(pattern, var_id):
                yield (var_id, first, last, entries), _covers(var_id, first, since)
        if len(batch) < VARIABLES_PER_READ:
            return
        after = batch[-1][0]


def _covers(var_id: str, first: int, since: datetime) -> bool:
    """Whether the kept history of ``var_id`` reaches back to ``since``: its first entry after it is
    its first ever, or an older one is kept."""
    return first <= 1 or HistoryEntry.objects.filter(var_id=var_id, seq__lt=first, at__lt=since).exists()


def replay_message(ref: uuid.UUID | str, var_id: str, first: int, last: int) -> tuple[str, str]:
    """The ``observers.replay`` message of one variable's run: (task name, JSON arguments)."""
    return REPLAY_TASK, json.dumps([str(ref), var_id, first, last], separators=(",", ":"))


def publish(messages: list[tuple[str, str]]) -> None:
    """Confirmed by the broker; what it does not take now waits in the outbox (the workers publish it)."""
    try:
        broker.publish_confirmed(messages)
    except BrokerUnavailable as exc:
        unsent = range(len(messages)) if exc.unsent is None else exc.unsent
        outbox.hold([messages[position] for position in unsent])

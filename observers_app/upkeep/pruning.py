"""The sweep's pruning: rows nobody needs any more, past their retention, in bounded batches."""

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Case, F, Model, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from .. import conf
from ..globs import globs_among
from ..models import HistoryEntry, Latest, Observer, Payload, Removal, StatBucket, Variable, VariableState


def prune(batch_size: int) -> dict[str, int]:
    """Prune each kind of row; returns how many of each went.

    - Removal records older than OBSERVERS_REMOVAL_RETENTION_DAYS, and the oldest beyond
      OBSERVERS_REMOVAL_MAX_ROWS; stat buckets older than a day.
    - Variable states (seq, observer count) of variables nobody observes, neither by name nor through a
      glob, not notified for OBSERVERS_STATE_RETENTION_DAYS. A variable's seq never restarts while it is
      observed; one observed again after its state was pruned numbers from 1 again.
    - Coalescing mailboxes (``Latest``) with nothing waiting, no lease held, and no coalescing observer.
    - Session tombstones (variables deleted) older than OBSERVERS_TOMBSTONE_RETENTION_DAYS: such a
      variable set again starts again at version 1.
    - Stored payloads older than OBSERVERS_PAYLOAD_RETENTION_DAYS (normally deleted by their last page;
      these lost a page, or their dispatcher died): a page still queued after that is logged, not delivered.
    - History entries older than OBSERVERS_HISTORY_MAX_AGE seconds, or more than
      OBSERVERS_HISTORY_MAX_ENTRIES seqs behind their variable's; each variable's ``history_floor``
      rises to the highest seq pruned (``history_pruned_at`` to when the newest of them was recorded),
      so that a reader from before them is told it missed some.
    """
    return {
        "history_pruned": _prune_history(batch_size),
        "records_pruned": _prune_records(batch_size),
        "states_pruned": _prune_unobserved(VariableState, Q(observer_count__lte=0), batch_size),
        "mailboxes_pruned": _prune_mailboxes(batch_size),
        "tombstones_pruned": _delete_in_batches(
            Variable, Q(deleted=True, updated_at__lt=_days_ago(conf.tombstone_retention_days())), batch_size
        ),
        "payloads_pruned": _delete_in_batches(
            Payload, Q(created_at__lt=_days_ago(conf.payload_retention_days())), batch_size
        ),
    }


def _days_ago(days: float) -> datetime:
    return timezone.now() - timedelta(days=days)


def _delete_in_batches(model: type[Model], condition: Q, batch_size: int) -> int:
    """Delete the rows meeting ``condition``, at most ``batch_size`` per statement."""
    deleted_total = 0
    while True:
        ids = model._default_manager.filter(condition).values("pk")[:batch_size]
        deleted, _ = model._default_manager.filter(pk__in=Subquery(ids)).delete()
        deleted_total += deleted
        if deleted < batch_size:
            return deleted_total


def _prune_history(batch_size: int) -> int:
    """History entries past their age or beyond their variable's newest OBSERVERS_HISTORY_MAX_ENTRIES
    seqs, a batch per transaction, each raising its variables' floors in the same transaction."""
    newest = VariableState.objects.filter(var_id=OuterRef("var_id")).values("seq")[:1]
    cutoff = timezone.now() - timedelta(seconds=conf.history_max_age())
    old = Q(at__lt=cutoff) | Q(seq__lte=Subquery(newest) - conf.history_max_entries())
    pruned = 0
    while True:
        with transaction.atomic():
            batch = list(
                HistoryEntry.objects.filter(old).values_list("id", "var_id", "seq", "at")[:batch_size]
            )
            HistoryEntry.objects.filter(id__in=[row[0] for row in batch]).delete()
            _raise_floors(batch)
        pruned += len(batch)
        if len(batch) < batch_size:
            return pruned


def _raise_floors(pruned: list[tuple[int, str, int, datetime]]) -> None:
    """Raise each variable's ``history_floor`` to the highest seq pruned, ``history_pruned_at`` to when
    the newest of them was recorded."""
    floors: dict[str, tuple[int, datetime]] = {}
    for _, var_id, seq, at in pruned:
        floor, newest = floors.get(var_id, (seq, at))
        floors[var_id] = (max(seq, floor), max(at, newest))
    if not floors:
        return
    highest = Case(*(When(var_id=v, then=Value(s)) for v, (s, _) in floors.items()))
    recorded = Case(*(When(var_id=v, then=Value(a)) for v, (_, a) in floors.items()))
    VariableState.objects.filter(var_id__in=floors).update(
        history_floor=Greatest(F("history_floor"), highest),
        history_pruned_at=Greatest(Coalesce(F("history_pruned_at"), recorded), recorded),
    )


def _prune_records(batch_size: int) -> int:
    """Removal records past their retention, then the oldest beyond the row cap; old stat buckets."""
    pruned = _delete_in_batches(
        Removal, Q(removed_at__lt=_days_ago(conf.removal_retention_days())), batch_size
    )
    pruned += _delete_in_batches(StatBucket, Q(minute__lt=_days_ago(1)), batch_size)
    while True:
        beyond_cap = Removal.objects.order_by("-removed_at", "-id").values_list("id", flat=True)[
            conf.removal_max_rows() : conf.removal_max_rows() + batch_size
        ]
        deleted, _ = Removal.objects.filter(id__in=list(beyond_cap)).delete()
        pruned += deleted
        if deleted < batch_size:
            return pruned


def _prune_unobserved(model: type[VariableState], unobserved: Q, batch_size: int) -> int:
    """Delete the variable states meeting ``unobserved`` (re-checked by the DELETE itself, so an
    observer added meanwhile keeps its row) that no glob pattern matches, a batch at a time."""
    stale = unobserved & (
        Q(last_notified_at__isnull=True) | Q(last_notified_at__lt=_days_ago(conf.state_retention_days()))
    )
    pruned = 0
    for page in _name_pages(model.objects.filter(stale), batch_size):
        patterns = Observer.objects.candidate_globs(page)  # only those whose prefix can match the page
        unmatched = [var_id for var_id in page if not globs_among(patterns, var_id)]
        deleted, _ = model.objects.filter(stale, var_id__in=unmatched).delete()
        pruned += deleted
        if deleted:  # a variable numbered again starts from 1: no entry of the old numbering may stay
            kept = model.objects.filter(var_id__in=unmatched).values("var_id")
            HistoryEntry.objects.filter(var_id__in=unmatched).exclude(var_id__in=kept).delete()
    return pruned


def _prune_mailboxes(batch_size: int) -> int:
    """Delete coalescing mailboxes with nothing waiting, no lease held and no coalescing observer
    reaching their variable (its ``delivered_seq`` only guards observers that exist)."""
    coalescing = Observer.objects.filter(coalesce=True)
    patterns = list(coalescing.filter(is_glob=True).values_list("var_id", flat=True).distinct())
    idle = Q(pending__isnull=True) & (Q(lease_until__isnull=True) | Q(lease_until__lt=timezone.now()))
    pruned = 0
    for page in _name_pages(Latest.objects.filter(idle), batch_size):
        exact = set(coalescing.filter(is_glob=False, var_id__in=page).values_list("var_id", flat=True))
        unobserved = [var_id for var_id in page if var_id not in exact and not globs_among(patterns, var_id)]
        deleted, _ = Latest.objects.filter(idle, var_id__in=unobserved).delete()
        pruned += deleted
    return pruned


def _name_pages(rows: QuerySet[Any], batch_size: int) -> Iterator[list[str]]:
    """The ``var_id`` of ``rows`` in pages of ``batch_size``, in name order (keyset paging, so rows
    deleted from a page meanwhile never shift the next one)."""
    after = ""
    while page := list(
        rows.filter(var_id__gt=after).order_by("var_id").values_list("var_id", flat=True)[:batch_size]
    ):
        yield page
        after = page[-1]

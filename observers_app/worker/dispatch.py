"""Dispatch: number a batch of notifications, page each one's observers, deliver its first page here."""

import json
import logging
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

from django.db import OperationalError, connection, transaction

from .. import conf, signals, validation
from ..db import DATABASE_ERRORS, prepared_rows, uuid_of
from ..exceptions import BrokerUnavailable
from ..globs import globs_among
from ..history import recording
from ..models import Observer
from ..publishing import broker, numbering, outbox
from ..querysets import DELIVERY_ROW
from ..telemetry import counters
from ..wiring import DELIVER_TASK
from . import coalescing as coalescing_module
from . import delivery, pacing, pages

logger = logging.getLogger(__name__)

# What makes a dispatch wait and be redelivered: the database or the broker went away.
RETRIED_ERRORS = (*DATABASE_ERRORS, BrokerUnavailable)
# How long a batch's numbering waits for a row lock before numbering row by row (see _number).
LOCK_WAIT = "50ms"
LOCK_NOT_AVAILABLE = "55P03"
# A notification whose JSON is at most this long is copied into each page's message; a longer one
# is stored once (pages.store) and its pages carry its reference.
INLINE_MAX_BYTES = 4096
# The highest observer id: the upper bound of a fan-out's last page.
LAST_ID = 2**128 - 1
# The most deliver pages one notification sends (10,000,000 observers at the default batch size).
MAX_PAGES = 10_000


def fan_out(notifications: list[dict[str, Any]]) -> Iterator[str | None]:
    """Fan out a batch of notifications (the dispatch messages one pool job took), in their order,
    yielding for each None once it is delivered, or its error if it failed: number it (unless its
    sender did), send a deliver task per further page of its observers, deliver its first page
    here. Each one's observers are read just before it is delivered, so one removed (or whose owner
    died) meanwhile is not called. The glob patterns that can match the batch's names are read once
    (by their indexed prefix, not all of them) and the counters written once, at the end. A
    database or broker error is raised: what was yielded before it was delivered."""
    size = conf.batch_size()
    patterns = Observer.objects.candidate_globs({n["var_id"] for n in notifications})
    _number(notifications, patterns)
    counts: Counter[str] = Counter()
    leased: dict[str, str] = {}  # variable -> lease token, until its mailbox is delivered
    try:
        for notification in notifications:
            try:
                coalescing, one_counts = _fan_out_one(notification, patterns, size=size)
                counts.update(one_counts)  # its callbacks ran: counted even if offering it fails
                if coalescing and (token := coalescing_module.offer(notification)):
                    leased[notification["var_id"]] = token
            except RETRIED_ERRORS:
                raise
            except Exception as exc:  # this notification's own failure (a value the table refuses)
                logger.exception("event=dispatch_failed var_id=%r", notification["var_id"])
                yield validation.storable_text(f"{type(exc).__name__}: {exc}")
                continue
            yield None
        counters.increment(counts)
        # After the whole batch is offered: the batch's own notifications of a variable collapse too.
        for var_id, token in list(leased.items()):
            coalescing_module.deliver_waiting(var_id, globs_among(patterns, var_id), token)
            del leased[var_id]
    finally:
        if leased:
            coalescing_module.release(leased)


def _fan_out_one(
    notification: dict[str, Any], patterns: list[str], *, size: int
) -> tuple[bool, dict[str, int]]:
    """Deliver one notification to its ordered observers; returns whether it has coalescing ones,
    and the counters to add."""
    var_id = notification["var_id"]
    globs = globs_among(patterns, var_id)
    # The first page, read once: its ordered observers are called here, without a second read; its
    # rows also say whether the variable has coalescing observers at all (beyond this page too).
    # With no glob matching (the common case), a statement compiled once reads it.
    if globs:
        first_page = list(
            delivery.reached(var_id, globs)
            .with_any_coalescing(var_id, globs)
            .order_by("id")
            .values_list(*DELIVERY_ROW, "coalesce", "any_coalescing")[:size]
        )
    else:
        first_page = Observer.objects.first_delivery_page(var_id, limit=size)
    if not first_page:
        # A sender's cached "has observers" outlived the last live observer.
        return False, {"empty_dispatches": 1}
    ordered_rows = [row[:4] for row in first_page if not row[4]]
    full = len(first_page) == size
    fanout = len(first_page)
    published: tuple[broker.Published, list[tuple[str, str]], uuid.UUID | None] | None = None
    if full:
        # One deliver task per further page, sent before this page's callbacks run.
        after = first_page[-1][0]
        # A small notification travels in each page's message; a larger one is stored once and its
        # pages carry its reference. The notification id first, either way: Flower and the logs show
        # which notification a page belongs to (a message's shown arguments are cut short).
        text = json.dumps(
            {"notification_id": notification["notification_id"], **notification}, separators=(",", ":")
        )
        payload_id = pages.store(text) if len(text) > INLINE_MAX_BYTES else None
        reference = (
            text
            if payload_id is None
            else json.dumps({"payload": str(payload_id), "notification_id": notification["notification_id"]})
        )
        globs_json = json.dumps(globs)
        messages: list[tuple[str, str]] = []
        # Estimated from the ordered observers of the first page: the further pages hold only those,
        # as many as their callbacks' cost makes worth a task each (pacing).
        cost = pacing.seconds_per_call({row[1] for row in ordered_rows})
        page = pacing.page_size(seconds_per_call=cost, size=size)
        bounds, rest = further_pages(
            uuid_of(after), read=len(ordered_rows), size=page, halve_last=page > size
        )
        for upto in bounds:
            messages.append((DELIVER_TASK, f'[{reference},"{after}","{upto}",{globs_json}]'))
            after = upto
        fanout += rest
        # Their confirms are awaited after this page's callbacks: the broker writes them to its disk
        # meanwhile, and the other pool processes start on them as they arrive.
        published = broker.publish(messages, sent_events=True), messages, payload_id
    signals.notification_dispatched.send(
        None,
        var_id=var_id,
        notification_id=notification["notification_id"],
        seq=notification["seq"],
        fanout=fanout,
    )
    try:
        counts = delivery.call_and_record(notification, ordered_rows, dispatched=True)
    finally:
        if published is not None:
            _confirm_pages(*published)
    coalescing = bool(first_page[0][5])
    return coalescing, counts


def further_pages(
    last: uuid.UUID, *, read: int, size: int, halve_last: bool = False
) -> tuple[list[uuid.UUID], int]:
    """The upper bounds of the pages after a full first page whose last id is ``last`` and which
    held ``read`` observers of the kind the pages deliver, and how many of those the pages are
    expected to hold, without asking the database.

    Observer ids are random (uuid4), spread evenly over the id space: the first page's span of it
    tells how densely the rest is filled. What follows ``last`` is cut into the whole number of
    ranges of equal width nearest to ``size`` observers each (the estimate is a few percent either
    way at the default size: 9,040 expected make nine pages, not ten, and a tenth task's cost); the
    last range ends at the highest id, so an observer added meanwhile is reached too. A page that
    holds more than expected is read in bounded chunks (``delivery.deliver``). With ``halve_last``
    (pages larger than the batch size, of cheap callbacks) the last range is cut in two halves: the
    pool processes take the pages as they come free, and smaller last pages make them finish
    closer together."""
    rest = LAST_ID - last.int
    expected = round(read * rest / (last.int + 1))
    # Bounded whatever ids a host wrote itself (not uuid4): pages then hold more, read in chunks.
    count = min(max(1, round(expected / size)), MAX_PAGES)
    bounds = [uuid.UUID(int=last.int + rest * n // count) for n in range(1, count + 1)]
    if halve_last:
        low = bounds[-2].int if count > 1 else last.int
        bounds.insert(-1, uuid.UUID(int=low + (LAST_ID - low) // 2))
    return bounds, expected


def _confirm_pages(
    published: broker.Published, messages: list[tuple[str, str]], payload_id: uuid.UUID | None
) -> None:
    """Wait for the deliver pages' confirms, before the dispatch message is acknowledged (a broker
    killed meanwhile loses no page); those the broker did not take (a full deliver queue, the broker
    away) wait in the outbox table, and the workers publish them as soon as it does: the dispatch is
    done, and no pool process waits on a full queue that only the pool can drain. Then a stored
    notification learns how many pages it has."""
    try:
        published.confirm()
    except BrokerUnavailable as exc:
        unsent = range(len(messages)) if exc.unsent is None else exc.unsent
        outbox.hold([messages[position] for position in unsent])
        logger.warning("event=pages_held pages=%d of=%d error=%s", len(unsent), len(messages), exc)
    if payload_id is not None:
        pages.all_sent(payload_id, len(messages))


def _number(notifications: list[dict[str, Any]], patterns: list[str]) -> None:
    """Number the notifications their senders did not, then keep every one in the history: each gets
    its variable's next ``seq``, in batch order, the batch's numbers taken in one statement, and its
    ``epoch``; the history's rows are written by one more statement, before any is delivered. Each
    statement is its own transaction, on one table (a transaction over both could deadlock with one
    that locks them in the other order): a number whose row could not be written was never
    delivered either (the batch is redelivered and numbered again), so no reader misses it.

    The numbering locks several rows, while a caller numbering with ``ordered=True`` may hold one
    of them in its own transaction: so on PostgreSQL it waits at most LOCK_WAIT for a lock, and
    falls back to one row per statement. It never holds a row while waiting long enough for the
    deadlock detector to pick the caller's transaction as the victim."""
    globs = {var_id: globs_among(patterns, var_id) for var_id in {n["var_id"] for n in notifications}}
    todo = [n for n in notifications if n["seq"] is None]
    unnumbered = Counter(n["var_id"] for n in todo)
    if unnumbered:
        _assign(todo, unnumbered, _advance(unnumbered))
    recording.record(notifications, globs)


def _advance(unnumbered: Counter[str]) -> dict[str, tuple[int, str]]:
    if connection.vendor != "postgresql" or len(unnumbered) == 1:
        return numbering.advance_seqs(unnumbered)
    try:
        with transaction.atomic():
            prepared_rows(connection, "SELECT set_config('lock_timeout', %s, true)", [LOCK_WAIT])
            return numbering.advance_seqs(unnumbered)
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
    return {var: numbering.advance_seqs({var: count})[var] for var, count in unnumbered.items()}


def _assign(todo: list[dict[str, Any]], unnumbered: Counter[str], last: dict[str, tuple[int, str]]) -> None:
    """Give the unnumbered notifications their numbers (each variable's ``count`` numbers up to its
    ``last``, in batch order) and epochs."""
    following = {var_id: last[var_id][0] - count + 1 for var_id, count in unnumbered.items()}
    for notification in todo:
        var_id = notification["var_id"]
        notification["seq"], notification["epoch"] = following[var_id], last[var_id][1]
        following[var_id] += 1

"""Large notifications stored once for the deliver pages of a fan-out, which carry a reference to them."""

import json
import logging
import uuid
from typing import Any

from django.db import connection, transaction

from ..db import prepared_rows
from ..models import Payload
from . import delivery

logger = logging.getLogger(__name__)


def store(notification: str) -> uuid.UUID:
    """Store ``notification`` (its JSON) for the pages about to be sent; returns the reference they
    carry."""
    return Payload.objects.create(notification=notification).id


def all_sent(payload_id: uuid.UUID, pages: int) -> None:
    """Record how many pages were sent; the payload goes as soon as all of them were delivered.

    On PostgreSQL this mark and the pages' own commit without waiting for the disk: one a database
    crash loses leaves the payload to the sweep (``OBSERVERS_PAYLOAD_RETENTION_DAYS``), and delivers
    nothing twice."""
    if connection.vendor == "postgresql":
        _mark(payload_id, "pages = %s", [pages], all_sent=True)
        return
    with transaction.atomic():
        payload = Payload.objects.select_for_update().filter(id=payload_id).first()
        if payload is None:
            return
        payload.pages = pages
        _save_or_delete(payload, complete=pages <= len(payload.done))


def deliver_page(payload_id: str, *, after: str | None, upto: str, globs: list[str]) -> None:
    """Deliver one page of the stored notification, then mark the page delivered (idempotent: a
    redelivered page marks it once)."""
    stored = Payload.objects.filter(id=payload_id).values_list("notification", flat=True).first()
    if stored is None:  # pruned past OBSERVERS_PAYLOAD_RETENTION_DAYS: its page waited longer than that
        logger.error("event=payload_missing payload=%s upto=%s", payload_id, upto)
        return
    delivery.deliver(json.loads(stored), after=after, upto=upto, globs=globs)
    if connection.vendor == "postgresql":
        _mark(payload_id, _PAGE_DONE, [upto, upto], all_sent=False)
        return
    with transaction.atomic():
        payload = Payload.objects.select_for_update().filter(id=payload_id).first()
        if payload is None:
            return
        if upto not in payload.done:
            payload.done.append(upto)
        # While its pages are being sent (pages 0), the dispatcher decides.
        _save_or_delete(payload, complete=0 < payload.pages <= len(payload.done))


# A page's mark: its upper bound (``upto``) added to the pages done, once.
_PAGE_DONE = "done = CASE WHEN done ? %s THEN done ELSE done || to_jsonb(%s::text) END"


def _mark(payload_id: uuid.UUID | str, assignment: str, params: list[Any], *, all_sent: bool) -> None:
    """On PostgreSQL, a mark in one statement, then the row's deletion once every page sent was
    delivered (while its pages are being sent, pages 0, the dispatcher decides): the row's lock
    orders concurrent marks, and each sees the others' (PostgreSQL re-reads a row updated meanwhile).
    Outside a caller's transaction, its commit does not wait for the disk."""
    table = Payload._meta.db_table  # a model constant, never data
    rows = prepared_rows(
        connection,
        "WITH commit_mode AS (SELECT set_config('synchronous_commit', "  # noqa: S608
        "CASE WHEN %s THEN 'off' ELSE current_setting('synchronous_commit') END, true) AS mode) "
        f"UPDATE {table} SET {assignment} FROM commit_mode WHERE id = %s::uuid "
        "RETURNING pages, jsonb_array_length(done)",
        [not connection.in_atomic_block, *params, str(payload_id)],
    )
    if rows and (all_sent or rows[0][0] > 0) and rows[0][0] <= rows[0][1]:
        prepared_rows(connection, f"DELETE FROM {table} WHERE id = %s::uuid", [str(payload_id)])  # noqa: S608


def _save_or_delete(payload: Payload, *, complete: bool) -> None:
    if complete:  # every page sent was delivered
        payload.delete()
    else:
        payload.save(update_fields=["pages", "done"])

"""Notifications stored once for the deliver pages of a large fan-out, which carry a reference to them."""

import json
import logging
import uuid
from typing import Any

from django.db import connection, transaction

from ..db import commit_without_waiting
from ..models import Payload
from . import delivery

logger = logging.getLogger(__name__)


def store(notification: dict[str, Any]) -> uuid.UUID:
    """Store ``notification`` for the pages about to be sent; returns the reference they carry."""
    return Payload.objects.create(notification=json.dumps(notification, separators=(",", ":"))).id


def all_sent(payload_id: uuid.UUID, pages: int) -> None:
    """Record how many pages were sent; the payload goes as soon as all of them were delivered.

    This mark and the pages' own commit without waiting for the disk: one a database crash loses
    leaves the payload to the sweep (``OBSERVERS_PAYLOAD_RETENTION_DAYS``), and delivers nothing twice."""
    outer = connection.in_atomic_block
    with transaction.atomic():
        commit_without_waiting(connection, outer=outer)
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
    outer = connection.in_atomic_block
    with transaction.atomic():
        commit_without_waiting(connection, outer=outer)
        payload = Payload.objects.select_for_update().filter(id=payload_id).first()
        if payload is None:
            return
        if upto not in payload.done:
            payload.done.append(upto)
        # While its pages are being sent (pages 0), the dispatcher decides.
        _save_or_delete(payload, complete=0 < payload.pages <= len(payload.done))


def _save_or_delete(payload: Payload, *, complete: bool) -> None:
    if complete:  # every page sent was delivered
        payload.delete()
    else:
        payload.save(update_fields=["pages", "done"])

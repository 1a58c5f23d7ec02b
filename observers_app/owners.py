"""The owner writes: create an owner, extend its lease, close it (removing its observers), lock a live one."""

import os
import socket
import uuid
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from . import removals, validation
from .exceptions import OwnerClosed, OwnerDead, UnknownOwner
from .models import Observer, Owner, Removal


def host_and_pid() -> tuple[str, int]:
    return socket.gethostname(), os.getpid()


def create_owner(*, name: str, kind: str, ttl_s: float | None, lock_key: int | None = None) -> Owner:
    expires_at = timezone.now() + timedelta(seconds=ttl_s) if ttl_s else None
    host, pid = host_and_pid()
    return Owner.objects.create(
        name=name, kind=kind, host=host, pid=pid, expires_at=expires_at, lock_key=lock_key
    )


def heartbeat_owner(owner_id: uuid.UUID, *, ttl_s: float) -> None:
    """Extend a live owner's lease by ``ttl_s`` from now; a dead or closed one raises."""
    ttl_s = validation.check_ttl(ttl_s)
    now = timezone.now()
    extended = Owner.objects.filter(id=owner_id, closed_at__isnull=True, expires_at__gt=now).update(
        expires_at=now + timedelta(seconds=ttl_s)
    )
    if not extended:
        with transaction.atomic():
            lock_live_owner(owner_id)  # raises the precise error
        raise OwnerDead(f"owner {owner_id} cannot be extended")


def close_owner(owner_id: uuid.UUID) -> int:
    """Close an owner and remove its observers at once; returns how many were removed."""
    Owner.objects.filter(id=owner_id, closed_at__isnull=True).update(closed_at=timezone.now())
    return removals.remove_in_batches(Observer.objects.filter(owner_id=owner_id), Removal.Reason.OWNER_CLOSED)


def lock_live_owner(owner_id: uuid.UUID) -> None:
    """Lock the owner row for this transaction, or say precisely why it cannot own observers."""
    owner = Owner.objects.select_for_update().filter(id=owner_id).first()
    if owner is None:
        raise UnknownOwner(f"no owner {owner_id}; use manager.process_owner() or manager.open_owner()")
    if owner.closed_at is not None:
        raise OwnerClosed(f"owner {owner_id} ({owner.name}) was closed; open a new one")
    if not Owner.objects.alive().filter(id=owner_id).exists():
        raise OwnerDead(f"owner {owner_id} ({owner.name}) is dead (its lease expired or its process died)")

"""Owner rows and the handle users hold: create, extend a lease, close (removing its observers at once)."""

import os
import socket
import uuid
from collections.abc import Generator
from datetime import timedelta
from types import TracebackType
from typing import Any, Protocol

from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper
from django.db.models.functions import Now
from django.utils import timezone

from .. import aio, validation
from ..exceptions import InvalidName, OwnerDead
from ..models import Observer, Owner, Removal
from ..observers.removals import remove_in_batches


class Keepalive(Protocol):
    """What keeps a process owner alive (its lock, or its lease's heartbeat thread)."""

    def stop(self) -> None: ...

    def detach_after_fork(self) -> None: ...


class OwnerHandle:
    """A process owner or a lease: bind observers to it with ``add_observer(..., owner=handle)``."""

    def __init__(
        self,
        owner_id: uuid.UUID,
        *,
        name: str,
        kind: str,
        ttl_s: float | None,
        keepalive: Keepalive | None = None,
    ) -> None:
        self.id, self.name, self.kind, self.ttl_s = owner_id, name, kind, ttl_s
        self.keepalive = keepalive
        self.closed = False

    def heartbeat(self) -> None:
        """Extend a lease by its TTL from now; raises OwnerDead/OwnerClosed if it already ended."""
        if self.ttl_s is None:
            return  # kept alive by its lock for as long as the process lives
        heartbeat_owner(self.id, ttl_s=self.ttl_s)

    def close(self) -> None:
        """Close the owner: its observers are removed before this returns."""
        if self.closed:
            return
        self.closed = True
        close_owner(self.id)
        if self.keepalive is not None:
            self.keepalive.stop()

    aheartbeat = aio.async_twin(heartbeat)
    aclose = aio.async_twin(close)

    def __enter__(self) -> "OwnerHandle":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> "OwnerHandle":
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<OwnerHandle {self.kind} {self.name!r} {self.id}{' closed' if self.closed else ''}>"


def open_owner(name: str, *, ttl_s: float = 30.0) -> OwnerHandle:
    """A lease for something shorter-lived than a process; alive while heartbeated within ``ttl_s``."""
    validation.check_name(name, what="owner name", error=InvalidName)
    ttl_s = validation.check_ttl(ttl_s)
    owner = create_owner(name=name, kind=Owner.Kind.LEASE, ttl_s=ttl_s)
    return OwnerHandle(owner.id, name=name, kind=Owner.Kind.LEASE, ttl_s=ttl_s)


_aopen_owner = aio.async_twin(open_owner)


class OpeningOwner:
    """What ``aopen_owner`` returns: await it for the OwnerHandle, or enter it with ``async with``,
    which opens the owner and closes it on exit (removing its observers)."""

    def __init__(self, name: str, *, ttl_s: float) -> None:
        self._opening = _aopen_owner(name, ttl_s=ttl_s)
        self._handle: OwnerHandle | None = None

    def __await__(self) -> Generator[Any, None, OwnerHandle]:
        return self._opening.__await__()

    async def __aenter__(self) -> OwnerHandle:
        self._handle = await self._opening
        return self._handle

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._handle is not None:
            await self._handle.aclose()


def aopen_owner(name: str, *, ttl_s: float = 30.0) -> OpeningOwner:
    """The async twin of :func:`open_owner`: ``lease = await aopen_owner(name)``, or ``async with
    aopen_owner(name) as lease:``, which closes the lease on exit (its observers removed before the
    block is left). The same arguments, errors (raised by the ``await``) and guarantees."""
    return OpeningOwner(name, ttl_s=ttl_s)


def host_and_pid() -> tuple[str, int]:
    return socket.gethostname(), os.getpid()


def expires_in(ttl_s: float) -> ExpressionWrapper:
    """``ttl_s`` seconds from now by the database's clock, the one "alive" is judged by
    (``OwnerQuerySet.alive``): an application server's skewed clock cannot shorten a lease."""
    return ExpressionWrapper(Now() + timedelta(seconds=ttl_s), output_field=DateTimeField())


def create_owner(*, name: str, kind: str, ttl_s: float | None, lock_key: int | None = None) -> Owner:
    host, pid = host_and_pid()
    return Owner.objects.create(
        name=name,
        kind=kind,
        host=host,
        pid=pid,
        expires_at=expires_in(ttl_s) if ttl_s else None,
        lock_key=lock_key,
    )


def heartbeat_owner(owner_id: uuid.UUID, *, ttl_s: float) -> None:
    """Extend a live owner's lease by ``ttl_s`` from now; a dead or closed one raises."""
    ttl_s = validation.check_ttl(ttl_s)
    extended = Owner.objects.filter(id=owner_id, closed_at__isnull=True, expires_at__gt=Now()).update(
        expires_at=expires_in(ttl_s)
    )
    if not extended:
        with transaction.atomic():
            Owner.objects.lock_live(owner_id)  # raises the precise error
        raise OwnerDead(f"owner {owner_id} cannot be extended")


def close_owner(owner_id: uuid.UUID) -> int:
    """Close an owner and remove its observers at once; returns how many were removed."""
    Owner.objects.filter(id=owner_id, closed_at__isnull=True).update(closed_at=timezone.now())
    return remove_in_batches(Observer.objects.filter(owner_id=owner_id), Removal.Reason.OWNER_CLOSED)

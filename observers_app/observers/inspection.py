"""What the hub can say of observers: how many a notification reaches, a variable's observers and
their health, why one went away."""

import uuid
from typing import Any

from django.utils import timezone

from .. import aio, validation
from ..models import Observer, Owner, Removal, VariableState, WebhookEndpoint


def observer_count(var_id: str) -> int:
    """Observers a notification of ``var_id`` would call now: its own and those of matching globs,
    not quarantined, durable or with a live owner."""
    validation.check_name(var_id)
    return Observer.objects.live().matching(var_id, Observer.objects.globs_matching(var_id)).count()


aobserver_count = aio.async_twin(observer_count)


def total_observers() -> int:
    return Observer.objects.live().count()


atotal_observers = aio.async_twin(total_observers)


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


aremoval_of = aio.async_twin(removal_of)


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
    endpoints = _webhook_endpoints([o.id for o in observers if o.callback == WebhookEndpoint.CALLBACK])
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


ainspect_variable = aio.async_twin(inspect_variable)


def _webhook_endpoints(refs: list[uuid.UUID]) -> dict[uuid.UUID, tuple[str, int]]:
    """The URL and failures in a row of the webhook observers ``refs``."""
    rows = WebhookEndpoint.objects.filter(observer_id__in=refs).values_list("observer_id", "url", "failures")
    return {ref: (url, failures) for ref, url, failures in rows}

"""Quarantine's way out: a quarantined observer (or disabled webhook) taken back into delivery."""

import uuid

from django.db import transaction

from .. import aio, conf, validation
from ..models import Observer, WebhookEndpoint
from ..telemetry import counters


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


areenable_observer = aio.async_twin(reenable_observer)

"""Webhook observers in the public API: add one, send it a test message."""

import uuid

from django.db import transaction

from .. import aio, validation
from ..models import Observer, WebhookEndpoint
from ..observers.adds import add_observer
from ..validation import HasOwnerId
from . import guard, messages, signing


class WebhookRef(uuid.UUID):
    """A webhook observer's ref (a UUID, usable wherever a ref is) that also carries ``secret``, its
    ``whsec_`` signing secret: the only time the hub shows it (the admin never does)."""

    secret: str

    def __init__(self, ref: uuid.UUID, secret: str) -> None:
        super().__init__(int=ref.int)
        object.__setattr__(self, "secret", secret)


def add_webhook(
    var_id: str,
    url: str,
    *,
    glob: bool = False,
    secret: str | None = None,
    owner: HasOwnerId | uuid.UUID | str | None = None,
) -> WebhookRef:
    """Observe ``var_id`` (a pattern with ``glob=True``) with an HTTP endpoint: each notification is
    POSTed to ``url`` as signed JSON (Standard Webhooks), retried, and the endpoint disabled when it
    keeps failing; see docs/webhooks.md. Returns its ref, whose ``secret`` is the signing secret
    (``secret`` if given, else a new one). Remove it with ``remove_observer``.

    Raises WebhookRefused for a URL the SSRF guard refuses (plain http, a non-public address not in
    OBSERVERS_WEBHOOK_ALLOW), InvalidWebhook for a malformed URL or secret."""
    validation.check_name(var_id)
    guard.check_url(url)
    secret = signing.new_secret() if secret is None else signing.check_secret(secret)
    with transaction.atomic():
        ref = add_observer(var_id, WebhookEndpoint.CALLBACK, owner=owner, glob=glob)
        WebhookEndpoint.objects.create(observer_id=ref, url=url, secret=secret)
    return WebhookRef(ref, secret)


aadd_webhook = aio.async_twin(add_webhook)


def send_test_webhook(ref: uuid.UUID | str) -> bool:
    """POST a signed ``webhook.test`` message to webhook observer ``ref`` (after commit); False if
    ``ref`` is not a webhook observer."""
    var_id = Observer.objects.filter(id=ref, webhook__isnull=False).values_list("var_id", flat=True).first()
    if var_id is None:
        return False
    payload = messages.body(messages.TEST, var_id, None, "test", {"observer_ref": str(ref)})
    message_id = f"msg_{uuid.uuid4().hex}"
    transaction.on_commit(lambda: messages.enqueue(str(ref), message_id, payload, attempt=1))
    return True


asend_test_webhook = aio.async_twin(send_test_webhook)

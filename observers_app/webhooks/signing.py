"""Standard Webhooks signing: ``whsec_`` secrets and the webhook-id/-timestamp/-signature headers."""

import base64
import binascii
import hashlib
import hmac
import secrets

from ..exceptions import InvalidWebhook

SECRET_PREFIX = "whsec_"  # noqa: S105 (the specification's prefix, not a secret)
# The specification asks for 24 to 64 random bytes.
SECRET_BYTES = 32
SECRET_BYTES_RANGE = range(24, 65)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def check_secret(secret: str) -> str:
    """Return ``secret`` if it is a ``whsec_`` secret of 24 to 64 base64-encoded bytes."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise InvalidWebhook("a webhook secret must be a string starting with 'whsec_'; omit it to get one")
    try:
        key = _key(secret)
    except (binascii.Error, ValueError):
        raise InvalidWebhook("a webhook secret must be 'whsec_' followed by base64") from None
    if len(key) not in SECRET_BYTES_RANGE:
        raise InvalidWebhook(f"a webhook secret must encode 24 to 64 bytes, not {len(key)}")
    return secret


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,`` and the base64 HMAC-SHA256 of ``id.timestamp.body`` under the secret's key."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }

"""The webhook task's hot-path statements: written once, no ORM compilation.

The ORM spends more time compiling these small statements than the database spends running them.
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection
from django.utils import timezone

from ..db import as_uuid, prepared_rows
from ..models import Observer, WebhookAttempt, WebhookEndpoint


@dataclass(frozen=True)
class Endpoint:
    """What one attempt needs of a webhook observer and its endpoint."""

    ref: uuid.UUID
    url: str
    secret: str
    failures: int
    failing: bool
    last_success_at: datetime | None
    disabled: bool
    var_id: str
    callback: str
    owner_id: uuid.UUID | None


def load(ref: uuid.UUID) -> Endpoint | None:
    """The endpoint of webhook observer ``ref``, or None if it was removed."""
    endpoint, observer = _table(WebhookEndpoint), _table(Observer)
    rows = prepared_rows(
        connection,
        f"SELECT e.url, e.secret, e.failures, e.failing_since IS NOT NULL, e.last_success_at, "  # noqa: S608
        f"o.quarantined_at IS NOT NULL, o.var_id, o.callback, o.owner_id "
        f"FROM {endpoint} e JOIN {observer} o ON o.id = e.observer_id WHERE e.observer_id = %s",
        [_uuid_param(ref)],
    )
    if not rows:
        return None
    url, secret, failures, failing, last_success_at, disabled, var_id, callback, owner_id = rows[0]
    return Endpoint(
        ref=ref,
        url=url,
        secret=secret,
        failures=failures,
        failing=bool(failing),
        last_success_at=_aware(last_success_at),
        disabled=bool(disabled),
        var_id=var_id,
        callback=callback,
        owner_id=as_uuid(owner_id),
    )


def add_attempt(
    ref: uuid.UUID,
    *,
    message_id: str,
    attempt: int,
    status_code: int | None,
    latency_ms: float,
    error: str,
    next_retry_at: datetime | None,
) -> None:
    """Write one attempt; an IntegrityError if the endpoint is gone (at commit, inside a transaction)."""
    stamp = connection.ops.adapt_datetimefield_value
    prepared_rows(
        connection,
        f"INSERT INTO {_table(WebhookAttempt)} (endpoint_id, message_id, attempt, status_code, "  # noqa: S608
        f"latency_ms, error, next_retry_at, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        [
            _uuid_param(ref),
            message_id,
            attempt,
            status_code,
            latency_ms,
            error,
            stamp(next_retry_at),
            stamp(timezone.now()),
        ],
    )


def prune_attempts(ref: uuid.UUID, *, kept: int) -> None:
    """Delete the endpoint's attempts older than its newest ``kept``, in one statement."""
    attempts = _table(WebhookAttempt)
    prepared_rows(
        connection,
        f"DELETE FROM {attempts} WHERE endpoint_id = %s AND id < ("  # noqa: S608
        f"SELECT id FROM {attempts} WHERE endpoint_id = %s ORDER BY id DESC LIMIT 1 OFFSET %s)",
        [_uuid_param(ref), _uuid_param(ref), kept - 1],
    )


def _table(model: type[WebhookEndpoint | Observer | WebhookAttempt]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _uuid_param(ref: uuid.UUID) -> uuid.UUID | str:
    # How Django stores a UUID: natively on PostgreSQL, as 32 hex digits elsewhere.
    return ref if connection.features.has_native_uuid_field else ref.hex


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back the naive UTC time Django stored.
    return timezone.make_aware(value, UTC) if value is not None and timezone.is_naive(value) else value

"""One attempt at a webhook message: POST it, record the attempt, then retry, give up or disable."""

import email.utils
import functools
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from .. import conf, signals, validation
from ..exceptions import BrokerUnavailable, InvalidWebhook
from ..models import Observer, Removal, WebhookEndpoint, WebhookRetry
from ..publishing import broker
from ..telemetry import counters
from . import client, messages, signing, store
from .store import Endpoint

logger = logging.getLogger(__name__)

RETRIED_STATUSES = frozenset({408, 429})
ERROR_EXCERPT = 300
SUCCESS_WRITTEN_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class Outcome:
    status_code: int | None = None
    error: str = ""
    retryable: bool = False
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def deliver(observer_ref: str, message_id: str, payload: str, attempt: int) -> str:
    """Make attempt number ``attempt`` of a message to a webhook observer's endpoint; returns what
    happened ("delivered", "retrying", "failed", or why nothing was sent)."""
    endpoint = store.load(uuid.UUID(observer_ref))
    if endpoint is None:
        return "removed"
    if endpoint.disabled:
        logger.info("event=webhook_skipped observer=%s message=%s reason=disabled", observer_ref, message_id)
        return "disabled"
    body = payload.encode()
    headers = signing.headers(endpoint.secret, message_id, int(time.time()), body)
    started = time.perf_counter()
    outcome = send(endpoint.url, body, headers)
    latency_ms = (time.perf_counter() - started) * 1000
    try:
        if outcome.ok:
            _record_attempt(endpoint, message_id, attempt, outcome, latency_ms, next_retry_at=None)
            _record_success(endpoint, timezone.now())
            return "delivered"
        with transaction.atomic():
            result, near_retry = _record_failed_attempt(
                endpoint, message_id, payload, attempt, outcome, latency_ms
            )
        if near_retry is not None:
            _send_near_retry(endpoint, message_id, payload, attempt=attempt + 1, delay=near_retry)
    except IntegrityError:  # the observer was removed while its message was on the way
        return "removed"
    return result


def _record_failed_attempt(
    endpoint: Endpoint,
    message_id: str,
    payload: str,
    attempt: int,
    outcome: Outcome,
    latency_ms: float,
) -> tuple[str, float | None]:
    """Count the failure, then disable the endpoint, give the message up or schedule its next attempt:
    a far one waits in the database; a near one's delay is returned, to be sent after commit."""
    now = timezone.now()
    error = outcome.error or f"HTTP {outcome.status_code}"
    delay = retry_delay(outcome, attempt)
    _report_failure(endpoint, message_id, attempt, error, delay)
    near_retry = None
    if _record_failure(endpoint, error, now):
        result, delay = "disabled", None
    elif delay is None:
        result = "failed"
    else:
        result = "retrying"
        if delay <= conf.webhook_max_countdown():
            near_retry = delay
        else:
            _park_retry(
                endpoint.ref, message_id, payload, attempt=attempt + 1, due_at=now + timedelta(seconds=delay)
            )
    next_retry_at = now + timedelta(seconds=delay) if delay is not None else None
    _record_attempt(endpoint, message_id, attempt, outcome, latency_ms, next_retry_at=next_retry_at)
    return result, near_retry


def _record_attempt(
    endpoint: Endpoint,
    message_id: str,
    attempt: int,
    outcome: Outcome,
    latency_ms: float,
    *,
    next_retry_at: datetime | None,
) -> None:
    """Write the attempt (an IntegrityError if its endpoint is gone) and prune the endpoint's oldest."""
    store.add_attempt(
        endpoint.ref,
        message_id=message_id,
        attempt=attempt,
        status_code=outcome.status_code,
        latency_ms=latency_ms,
        error=outcome.error,
        next_retry_at=next_retry_at,
    )
    store.prune_attempts(endpoint.ref, kept=conf.webhook_attempts_kept())


def send(url: str, body: bytes, headers: dict[str, str]) -> Outcome:
    """POST and classify: 2xx delivered; 408, 429, 5xx, timeouts and connection errors retried; any
    other status, a refused address, a broken redirect and a reply the client cannot follow not.
    Whatever the endpoint answers, this never raises: its error text is stored as it came."""
    outcome = _post(url, body, headers)
    return Outcome(
        status_code=outcome.status_code,
        error=validation.storable_text(outcome.error),
        retryable=outcome.retryable,
        retry_after=outcome.retry_after,
    )


def _post(url: str, body: bytes, headers: dict[str, str]) -> Outcome:
    try:
        reply = client.post(url, body, headers)
    except InvalidWebhook as exc:  # refused by the guard, too many redirects
        return Outcome(error=str(exc))
    except httpx.InvalidURL as exc:
        return Outcome(error=f"invalid redirect: {exc}")
    except (client.DeliveryTimeout, httpx.TimeoutException) as exc:
        return Outcome(error=f"timeout: {exc or type(exc).__name__}", retryable=True)
    except (httpx.HTTPError, OSError) as exc:  # connection refused or reset, DNS failure, protocol error
        return Outcome(error=f"{type(exc).__name__}: {exc}", retryable=True)
    except Exception as exc:  # a reply the client cannot follow (a malformed Location): the endpoint's
        return Outcome(error=f"unusable reply: {type(exc).__name__}: {exc}")
    status = reply.status
    if 200 <= status < 300:
        return Outcome(status_code=status)
    excerpt = reply.body[:ERROR_EXCERPT].decode(errors="replace")
    error = f"HTTP {status} from {reply.url}: {excerpt}".strip()
    retryable = status >= 500 or status in RETRIED_STATUSES
    retry_after = parse_retry_after(reply.retry_after) if status == 429 else None
    return Outcome(status_code=status, error=error, retryable=retryable, retry_after=retry_after)


def retry_delay(outcome: Outcome, attempt: int) -> float | None:
    """Seconds until the next attempt, or None when there is none: OBSERVERS_WEBHOOK_RETRY_SCHEDULE's
    entry for this attempt, or a 429's Retry-After (at most the schedule's longest delay)."""
    schedule = conf.webhook_retry_schedule()
    if not outcome.retryable or attempt > len(schedule):
        return None
    if outcome.retry_after is not None:
        return min(outcome.retry_after, max(schedule))
    return schedule[attempt - 1]


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date; None if absent or unreadable
    (then the schedule's delay applies). A date without a zone (``-0000``) is read as UTC."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²" is a digit to str.isdigit, not to float()
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - (now or timezone.now())).total_seconds())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _record_success(endpoint: Endpoint, now: datetime) -> None:
    """End a failing streak; a healthy endpoint's last success is written at most every
    SUCCESS_WRITTEN_EVERY, not on every delivery."""
    last = endpoint.last_success_at
    if endpoint.failures or endpoint.failing or last is None or now - last > SUCCESS_WRITTEN_EVERY:
        WebhookEndpoint.objects.filter(pk=endpoint.ref).update(
            failures=0, failing_since=None, last_success_at=now
        )


def _report_failure(
    endpoint: Endpoint, message_id: str, attempt: int, error: str, delay: float | None
) -> None:
    """A log line, and the hub's callback_failed signal."""
    logger.warning(
        "event=webhook_failed observer=%s message=%s attempt=%d error=%r retry_in_s=%s",
        endpoint.ref,
        message_id,
        attempt,
        error,
        delay,
    )
    signals.callback_failed.send(
        None, ref=endpoint.ref, var_id=endpoint.var_id, callback=endpoint.callback, error=error
    )


def _record_failure(endpoint: Endpoint, error: str, now: datetime) -> bool:
    """Count the failure; disable the endpoint when it failed too often in a row or for too long.
    Returns whether it is disabled now."""
    WebhookEndpoint.objects.filter(pk=endpoint.ref).update(
        failures=F("failures") + 1, failing_since=Coalesce(F("failing_since"), now)
    )
    health = WebhookEndpoint.objects.filter(pk=endpoint.ref).values_list("failures", "failing_since").first()
    if health is None:  # removed meanwhile
        return False
    failures, failing_since = health
    failing_s = (now - (failing_since or now)).total_seconds()
    if failures >= conf.webhook_disable_after_failures():
        disable(endpoint, f"{failures} failed attempts in a row; last: {error}", now=now)
        return True
    if failing_s >= conf.webhook_disable_after():
        disable(endpoint, f"failing for {failing_s:.0f} s; last: {error}", now=now)
        return True
    return False


def disable(endpoint: Endpoint, reason: str, *, now: datetime) -> bool:
    """Quarantine the endpoint's observer with ``reason`` (once, however many workers decide it)."""
    disabled = Observer.objects.filter(id=endpoint.ref, quarantined_at__isnull=True).update(
        quarantined_at=now, last_error=reason, last_failed_at=now
    )
    if not disabled:
        return False
    logger.warning("event=webhook_disabled observer=%s url=%s reason=%r", endpoint.ref, endpoint.url, reason)
    Removal.objects.create(
        observer_ref=endpoint.ref,
        var_id=endpoint.var_id,
        callback=endpoint.callback,
        owner_ref=endpoint.owner_id,
        reason=Removal.Reason.QUARANTINED,
        detail=reason,
    )
    counters.increment({"removed_quarantined": 1})
    transaction.on_commit(
        functools.partial(
            signals.observer_removed.send,
            None,
            ref=endpoint.ref,
            var_id=endpoint.var_id,
            callback=endpoint.callback,
            owner=endpoint.owner_id,
            reason=Removal.Reason.QUARANTINED,
        )
    )
    return True


def _send_near_retry(
    endpoint: Endpoint, message_id: str, payload: str, *, attempt: int, delay: float
) -> None:
    """A near retry is a message with a countdown, confirmed by the broker before this attempt's message
    is acknowledged; one the broker does not take now waits in the database, for the sweep."""
    try:
        messages.enqueue(str(endpoint.ref), message_id, payload, attempt=attempt, countdown=delay)
    except BrokerUnavailable:
        logger.warning("event=webhook_retry_parked observer=%s message=%s", endpoint.ref, message_id)
        _park_retry(
            endpoint.ref,
            message_id,
            payload,
            attempt=attempt,
            due_at=timezone.now() + timedelta(seconds=delay),
        )


def _park_retry(ref: uuid.UUID, message_id: str, payload: str, *, attempt: int, due_at: datetime) -> None:
    WebhookRetry.objects.create(
        endpoint_id=ref, message_id=message_id, body=payload, attempt=attempt, due_at=due_at
    )


def release_due_retries(*, batch_size: int) -> int:
    """Send the parked retries now due, a bounded batch per transaction, each deleted once the broker
    confirmed it (what it did not take stays for the next sweep); for the sweep."""
    released = 0
    while True:
        with transaction.atomic():
            due = list(
                WebhookRetry.objects.select_for_update(skip_locked=True)
                .filter(due_at__lte=timezone.now())
                .order_by("due_at")
                .values_list("id", "endpoint_id", "message_id", "body", "attempt")[:batch_size]
            )
            sent = [row[0] for row in due]
            try:
                broker.publish_confirmed(
                    [
                        messages.task_message(str(ref), message_id, payload, attempt)
                        for _, ref, message_id, payload, attempt in due
                    ]
                )
            except BrokerUnavailable as exc:
                unsent = set(range(len(due)) if exc.unsent is None else exc.unsent)
                sent = [row[0] for position, row in enumerate(due) if position not in unsent]
                logger.warning("event=webhook_retries_wait retries=%d error=%s", len(unsent), exc)
            WebhookRetry.objects.filter(id__in=sent).delete()
        released += len(sent)
        if len(due) < batch_size or len(sent) < len(due):
            return released

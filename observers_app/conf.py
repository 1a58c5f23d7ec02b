"""The app's settings, each with its default; read them through these functions."""

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, bool | float | int | str] = {
    # The hub's dispatch queue; its deliver and shed queues are "<name>.deliver" and "<name>.shed".
    "OBSERVERS_QUEUE": "observers",
    # Notifications the dispatch queue holds; past that the oldest are dropped into the shed queue,
    # where the sweep counts them. Changing it on an existing queue needs the queue deleted first.
    "OBSERVERS_QUEUE_MAX_LENGTH": 100_000,
    # Replicated quorum queues, for a RabbitMQ cluster (drop-head and dead-lettering work on them).
    "OBSERVERS_QUORUM_QUEUES": False,
    # Seconds between beat's sweeps of dead owners, stalled coalescing and shed notifications.
    "OBSERVERS_SWEEP_INTERVAL": 30.0,
    # Observers delivered per deliver task: a few hundred keeps a 10,000-observer fan-out at tens of messages.
    "OBSERVERS_BATCH_SIZE": 250,
    # Seconds one callback may run before CallbackTimeout is raised inside it.
    "OBSERVERS_CALLBACK_TIME_LIMIT": 10.0,
    # Largest JSON form of (var_id, old, new, metadata) that notify_observers accepts.
    "OBSERVERS_MAX_PAYLOAD_BYTES": 256 * 1024,
    # Seconds a process may keep believing a variable has observers without asking the database: a stale
    # "yes" only costs a message the worker finds empty (after another process removed the last observer).
    "OBSERVERS_PRESENCE_TTL": 120.0,
    # Failed calls in a row after which a durable observer is quarantined (not called).
    "OBSERVERS_QUARANTINE_AFTER": 5,
    # Days the sweep keeps removal records (the answer to "where did my observer go?").
    "OBSERVERS_REMOVAL_RETENTION_DAYS": 7,
    # Rows the sweep and owner closes delete per transaction.
    "OBSERVERS_SWEEP_BATCH_SIZE": 1000,
    # Lease of a process owner where no PostgreSQL lock can keep it (SQLite): heartbeats every third of it.
    "OBSERVERS_PROCESS_TTL": 3.0,
    # Caps: add_observer raises TooManyObservers past these.
    "OBSERVERS_MAX_PER_VARIABLE": 100_000,
    "OBSERVERS_MAX_PER_OWNER": 10_000,
}

# Webhooks (observers_app/webhooks/; docs/webhooks.md), read through the webhook_* functions below.
WEBHOOK_DEFAULTS: dict[str, Any] = {
    # Seconds to wait after failed attempt 1, 2, ...: one more attempt per entry, then the message is dropped.
    "OBSERVERS_WEBHOOK_RETRY_SCHEDULE": (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600),
    # Retries due sooner than this are Celery countdowns; later ones wait in the database for the sweep to
    # send them (a message held unacknowledged longer than RabbitMQ's consumer_timeout, 30 min by default,
    # closes the worker's channel).
    "OBSERVERS_WEBHOOK_MAX_COUNTDOWN": 600,
    # An endpoint is disabled (quarantined) after this many failed attempts in a row...
    "OBSERVERS_WEBHOOK_DISABLE_AFTER_FAILURES": 1000,
    # ... or once it has failed, without a success in between, for this many seconds (5 days).
    "OBSERVERS_WEBHOOK_DISABLE_AFTER": 5 * 24 * 3600,
    # Seconds to connect, and for the whole exchange (every redirect hop included).
    "OBSERVERS_WEBHOOK_CONNECT_TIMEOUT": 5.0,
    "OBSERVERS_WEBHOOK_TIMEOUT": 15.0,
    # Redirects followed by hand, each hop checked by the SSRF guard again.
    "OBSERVERS_WEBHOOK_MAX_REDIRECTS": 3,
    # Attempts kept per endpoint for the admin; older ones are deleted as new ones are recorded.
    "OBSERVERS_WEBHOOK_ATTEMPTS_KEPT": 50,
    # Plain http endpoints: refused unless True.
    "OBSERVERS_WEBHOOK_ALLOW_HTTP": False,
    # Host names, addresses and CIDR networks the SSRF guard lets through although they are not public.
    "OBSERVERS_WEBHOOK_ALLOW": (),
    # Fixed answers for host names, like curl's --resolve ({"hooks.internal": ["10.0.0.5"]}); the guard
    # still checks them.
    "OBSERVERS_WEBHOOK_RESOLVE": {},
}


def _get(name: str) -> bool | float | int | str:
    return getattr(settings, name, DEFAULTS[name])


def queue_name() -> str:
    return str(_get("OBSERVERS_QUEUE"))


def queue_max_length() -> int:
    return int(_get("OBSERVERS_QUEUE_MAX_LENGTH"))


def quorum_queues() -> bool:
    return bool(_get("OBSERVERS_QUORUM_QUEUES"))


def sweep_interval() -> float:
    return float(_get("OBSERVERS_SWEEP_INTERVAL"))


def batch_size() -> int:
    return int(_get("OBSERVERS_BATCH_SIZE"))


def callback_time_limit() -> float:
    return float(_get("OBSERVERS_CALLBACK_TIME_LIMIT"))


def max_payload_bytes() -> int:
    return int(_get("OBSERVERS_MAX_PAYLOAD_BYTES"))


def presence_ttl() -> float:
    return float(_get("OBSERVERS_PRESENCE_TTL"))


def quarantine_after() -> int:
    return int(_get("OBSERVERS_QUARANTINE_AFTER"))


def sweep_batch_size() -> int:
    return int(_get("OBSERVERS_SWEEP_BATCH_SIZE"))


def process_ttl() -> float:
    return float(_get("OBSERVERS_PROCESS_TTL"))


def max_per_variable() -> int:
    return int(_get("OBSERVERS_MAX_PER_VARIABLE"))


def max_per_owner() -> int:
    return int(_get("OBSERVERS_MAX_PER_OWNER"))


def removal_retention_days() -> float:
    return float(_get("OBSERVERS_REMOVAL_RETENTION_DAYS"))


def _webhook(name: str) -> Any:
    return getattr(settings, name, WEBHOOK_DEFAULTS[name])


def webhook_retry_schedule() -> list[float]:
    return [float(delay) for delay in _webhook("OBSERVERS_WEBHOOK_RETRY_SCHEDULE")]


def webhook_max_countdown() -> float:
    return float(_webhook("OBSERVERS_WEBHOOK_MAX_COUNTDOWN"))


def webhook_disable_after_failures() -> int:
    return int(_webhook("OBSERVERS_WEBHOOK_DISABLE_AFTER_FAILURES"))


def webhook_disable_after() -> float:
    return float(_webhook("OBSERVERS_WEBHOOK_DISABLE_AFTER"))


def webhook_connect_timeout() -> float:
    return float(_webhook("OBSERVERS_WEBHOOK_CONNECT_TIMEOUT"))


def webhook_timeout() -> float:
    return float(_webhook("OBSERVERS_WEBHOOK_TIMEOUT"))


def webhook_max_redirects() -> int:
    return int(_webhook("OBSERVERS_WEBHOOK_MAX_REDIRECTS"))


def webhook_attempts_kept() -> int:
    return int(_webhook("OBSERVERS_WEBHOOK_ATTEMPTS_KEPT"))


def webhook_allow_http() -> bool:
    return bool(_webhook("OBSERVERS_WEBHOOK_ALLOW_HTTP"))


def webhook_allow() -> list[str]:
    return list(_webhook("OBSERVERS_WEBHOOK_ALLOW"))


def webhook_resolve() -> dict[str, list[str]]:
    return {
        host.lower().rstrip("."): list(addresses)
        for host, addresses in _webhook("OBSERVERS_WEBHOOK_RESOLVE").items()
    }

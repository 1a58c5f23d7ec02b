"""The app's settings, each with its default; read them through these functions."""

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
    # Observers delivered per deliver task (and read per page): a task costs the worker ~4 ms of CPU besides
    # its callbacks (Celery's bookkeeping, events, one read), so 1,000 keeps that a small share of 1,000
    # callbacks while a 10,000-observer fan-out still spreads over 10 tasks.
    "OBSERVERS_BATCH_SIZE": 1000,
    # Seconds one callback may run before CallbackTimeout is raised inside it.
    "OBSERVERS_CALLBACK_TIME_LIMIT": 10.0,
    # Largest JSON form of (var_id, old, new, metadata) that notify_observers accepts.
    "OBSERVERS_MAX_PAYLOAD_BYTES": 256 * 1024,
    # Seconds a process may keep believing a variable has observers without asking the database: a stale
    # "yes" only costs a message the worker finds empty (after another process removed the last observer).
    "OBSERVERS_PRESENCE_TTL": 120.0,
    # Seconds a process may keep believing a variable has no observer (globs included) without asking the
    # database; every add_observer waits this long after its commit, so that no process still believes it
    # when it returns. Longer saves round trips on variables nobody observes and makes every add slower.
    "OBSERVERS_ABSENCE_TTL": 0.25,
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


def absence_ttl() -> float:
    return float(_get("OBSERVERS_ABSENCE_TTL"))


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

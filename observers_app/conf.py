"""The app's settings, each with its default; read them through these functions."""

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, bool | float | int | str | list[str]] = {
    # The hub's dispatch queue; its deliver and shed queues are "<name>.deliver" and "<name>.shed".
    "OBSERVERS_QUEUE": "observers",
    # Notifications the dispatch queue holds; past that the oldest are dropped into the shed queue,
    # where the sweep counts them. Changing it on an existing queue needs the queue deleted first.
    "OBSERVERS_QUEUE_MAX_LENGTH": 100_000,
    # Notifications the shed queue holds until a worker counts them (every second); past it, while no
    # worker runs, the broker drops the oldest of them uncounted. A changed value: the workers count what
    # the queue holds, delete it and declare it again.
    "OBSERVERS_SHED_QUEUE_MAX_LENGTH": 100_000,
    # Bytes the deliver queue holds (pages, and durable notifications, which are never shed); past that
    # the broker refuses new ones (never drops one): they wait in the outbox table until it takes them.
    # Pages carry a short reference, not values.
    "OBSERVERS_DELIVER_QUEUE_MAX_BYTES": 256 * 1024 * 1024,
    # Replicated quorum queues, for a RabbitMQ cluster (drop-head and dead-lettering work on them).
    "OBSERVERS_QUORUM_QUEUES": False,
    # Seconds between beat's sweeps of dead owners, stalled coalescing and shed notifications.
    "OBSERVERS_SWEEP_INTERVAL": 30.0,
    # Durable notifications by default (notify_observers(..., durable=...) decides per call): written to
    # the outbox table in the caller's transaction, so a committed one survives its caller's death.
    "OBSERVERS_DURABLE": False,
    # Seconds a durable notification may wait in the outbox before the workers publish it themselves
    # (its caller died, or the broker was away); shorter means more duplicates while a caller lives.
    "OBSERVERS_OUTBOX_GRACE": 3.0,
    # Deliveries of a dispatch or deliver message that never finishes (it raises, or kills its worker
    # process) before it is parked as a dead letter instead of being redelivered forever.
    "OBSERVERS_MAX_DELIVERIES": 5,
    # Observers delivered per deliver task (and read per page): a task costs the worker its own CPU besides
    # its callbacks (Celery's bookkeeping, events, one read), so 1,000 keeps that a small share of 1,000
    # callbacks while a 10,000-observer fan-out still spreads over about 10 tasks (the pages after the
    # first are id ranges estimated to hold this many each).
    "OBSERVERS_BATCH_SIZE": 1000,
    # Seconds one callback may run before CallbackTimeout is raised inside it.
    "OBSERVERS_CALLBACK_TIME_LIMIT": 10.0,
    # Largest JSON form of (var_id, old, new, metadata) that notify_observers accepts.
    "OBSERVERS_MAX_PAYLOAD_BYTES": 256 * 1024,
    # Bytes of messages a process's send buffer holds while the broker is unreachable (beside its
    # message cap); past it the oldest are dropped and counted as shed.
    "OBSERVERS_SEND_BUFFER_MAX_BYTES": 64 * 1024 * 1024,
    # Seconds a process may keep believing a variable has observers without asking the database: a stale
    # "yes" only costs a message the worker finds empty (after another process removed the last observer).
    "OBSERVERS_PRESENCE_TTL": 120.0,
    # Seconds a process may keep believing a variable has no observer (globs included) without asking the
    # database; every add_observer waits this long after its commit, so that no process still believes it
    # when it returns. Longer saves round trips on variables nobody observes and makes every add slower.
    "OBSERVERS_ABSENCE_TTL": 0.25,
    # On PostgreSQL, each process that notifies keeps a view of every observed name and pattern in memory
    # (publishing/view.py), told of each add through the broker: a name nobody observes costs no database
    # round trip, and an add waits only for the live views to learn of it. False: the absence leases
    # above (the only way on other databases). The same value in every process of a deployment.
    "OBSERVERS_PRESENCE_VIEW": True,
    # Seconds a view may answer "no observer" without having shown, through the broker and the database,
    # that it still listens; renewed every third of it. An add that a view does not acknowledge (its
    # process hangs, or died without closing) waits at most this long for it.
    "OBSERVERS_PRESENCE_VIEW_LEASE": 1.0,
    # Failed calls in a row after which a durable observer is quarantined (not called).
    "OBSERVERS_QUARANTINE_AFTER": 5,
    # Days the sweep keeps removal records (the answer to "where did my observer go?"), and the most it keeps.
    "OBSERVERS_REMOVAL_RETENTION_DAYS": 7,
    "OBSERVERS_REMOVAL_MAX_ROWS": 100_000,
    # Days the sweep keeps the state (seq) of a variable nobody observes since its last notification.
    "OBSERVERS_STATE_RETENTION_DAYS": 1,
    # Days the sweep keeps a deleted session variable's row (which holds its version).
    "OBSERVERS_TOMBSTONE_RETENTION_DAYS": 7,
    # Days a large fan-out's stored notification may wait for its deliver pages before the sweep prunes it.
    "OBSERVERS_PAYLOAD_RETENTION_DAYS": 1,
    # Rows the sweep and owner closes delete per transaction.
    "OBSERVERS_SWEEP_BATCH_SIZE": 1000,
    # Seconds a process owner found without its lock must stay so before the sweep deletes its observers
    # (they are not called meanwhile): a live process takes its lock again after a database restart.
    "OBSERVERS_OWNER_GRACE": 60.0,
    # Lease of a process owner where no PostgreSQL lock can keep it (SQLite): heartbeats every third of it.
    "OBSERVERS_PROCESS_TTL": 3.0,
    # Who may read /metrics: requests bearing "Authorization: Bearer <token>" (when one is set), or
    # coming from one of these addresses.
    "OBSERVERS_METRICS_TOKEN": "",
    "OBSERVERS_METRICS_ALLOWED_IPS": ["127.0.0.1", "::1"],
    # Caps: add_observer raises TooManyObservers past these.
    "OBSERVERS_MAX_PER_VARIABLE": 100_000,
    "OBSERVERS_MAX_PER_OWNER": 10_000,
    # Streams (Server-Sent Events): events a stream buffers for a slow reader before it coalesces to the
    # latest per variable (and closes past twice that); seconds between heartbeat comments; variables per
    # stream; lifetime of a token from issue_token; the registered name of the authorization hook; the
    # other origins whose pages may read a token-authenticated stream (CORS), e.g. "https://app.example.com";
    # whether a process serving streams freezes their objects out of full garbage collections (see
    # streams/gc_policy.py: without it a process with many streams stalls in full collections).
    "OBSERVERS_STREAM_BUFFER": 100,
    "OBSERVERS_STREAM_HEARTBEAT": 15.0,
    "OBSERVERS_STREAM_MAX_VARS": 50,
    "OBSERVERS_STREAM_TOKEN_TTL": 3600.0,
    "OBSERVERS_STREAM_AUTHORIZER": "observers.watch_permission",
    "OBSERVERS_STREAM_ALLOWED_ORIGINS": [],
    "OBSERVERS_STREAM_GC_FREEZE": True,
    # Seconds a web process keeps observing a name after its last stream left: its changes are still
    # kept in the history, so a client that reconnects within it resumes without a reset.
    "OBSERVERS_STREAM_RESUME_WINDOW": 30.0,
    # Streams one client may hold open in a web process at once: per logged-in user, per token, per
    # address; past one, the next is refused (429) and the others run on.
    "OBSERVERS_STREAM_MAX_PER_USER": 10,
    "OBSERVERS_STREAM_MAX_PER_TOKEN": 10,
    "OBSERVERS_STREAM_MAX_PER_ADDRESS": 100,
    # A pattern with fewer literal characters before its first "*" than this is a wide glob: a session
    # user needs the observers_app.watch_wide_glob permission for it (every match costs a broker message).
    "OBSERVERS_STREAM_GLOB_MIN_PREFIX": 4,
    # Seconds a stream may spend sending one chunk to a client that stopped reading before it is closed.
    "OBSERVERS_STREAM_WRITE_TIMEOUT": 30.0,
    # Seconds between two checks of each open stream's authorization (user, permission, revoked token).
    "OBSERVERS_STREAM_REAUTHORIZE_INTERVAL": 60.0,
    # The notification history (observers_app/history/): every notification a worker dispatches is kept,
    # per variable the newest OBSERVERS_HISTORY_MAX_ENTRIES seqs at most and none older than
    # OBSERVERS_HISTORY_MAX_AGE seconds (the sweep prunes the rest); off, nothing is kept and every
    # notification changes its variable's epoch (no reader can resume across it).
    "OBSERVERS_HISTORY": True,
    "OBSERVERS_HISTORY_MAX_ENTRIES": 1000,
    "OBSERVERS_HISTORY_MAX_AGE": 3600.0,
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


# Settings renamed, by their old name: the old name is read when the new one is not set, with a
# system check warning (observers.W005), until 0.4.
RENAMED = {"OBSERVERS_OUTBOX_MAX_BYTES": "OBSERVERS_SEND_BUFFER_MAX_BYTES"}
_OLD_NAMES = {new: old for old, new in RENAMED.items()}


def _get(name: str) -> Any:
    if not hasattr(settings, name) and name in _OLD_NAMES:
        return getattr(settings, _OLD_NAMES[name], DEFAULTS[name])
    return getattr(settings, name, DEFAULTS[name])


def queue_name() -> str:
    return str(_get("OBSERVERS_QUEUE"))


def queue_max_length() -> int:
    return int(_get("OBSERVERS_QUEUE_MAX_LENGTH"))


def shed_queue_max_length() -> int:
    return int(_get("OBSERVERS_SHED_QUEUE_MAX_LENGTH"))


def deliver_queue_max_bytes() -> int:
    return int(_get("OBSERVERS_DELIVER_QUEUE_MAX_BYTES"))


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


def presence_view() -> bool:
    return bool(_get("OBSERVERS_PRESENCE_VIEW"))


def presence_view_lease() -> float:
    return float(_get("OBSERVERS_PRESENCE_VIEW_LEASE"))


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


def removal_max_rows() -> int:
    return int(_get("OBSERVERS_REMOVAL_MAX_ROWS"))


def state_retention_days() -> float:
    return float(_get("OBSERVERS_STATE_RETENTION_DAYS"))


def tombstone_retention_days() -> float:
    return float(_get("OBSERVERS_TOMBSTONE_RETENTION_DAYS"))


def send_buffer_max_bytes() -> int:
    return int(_get("OBSERVERS_SEND_BUFFER_MAX_BYTES"))


def payload_retention_days() -> float:
    return float(_get("OBSERVERS_PAYLOAD_RETENTION_DAYS"))


def metrics_token() -> str:
    return str(_get("OBSERVERS_METRICS_TOKEN"))


def metrics_allowed_ips() -> list[str]:
    return list(_get("OBSERVERS_METRICS_ALLOWED_IPS"))


def durable() -> bool:
    return bool(_get("OBSERVERS_DURABLE"))


def outbox_grace() -> float:
    return float(_get("OBSERVERS_OUTBOX_GRACE"))


def owner_grace() -> float:
    return float(_get("OBSERVERS_OWNER_GRACE"))


def max_deliveries() -> int:
    return int(_get("OBSERVERS_MAX_DELIVERIES"))


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


def history() -> bool:
    return bool(_get("OBSERVERS_HISTORY"))


def history_max_entries() -> int:
    return int(_get("OBSERVERS_HISTORY_MAX_ENTRIES"))


def history_max_age() -> float:
    return float(_get("OBSERVERS_HISTORY_MAX_AGE"))


def stream_resume_window() -> float:
    return float(_get("OBSERVERS_STREAM_RESUME_WINDOW"))


def stream_buffer() -> int:
    return int(_get("OBSERVERS_STREAM_BUFFER"))


def stream_heartbeat() -> float:
    return float(_get("OBSERVERS_STREAM_HEARTBEAT"))


def stream_max_vars() -> int:
    return int(_get("OBSERVERS_STREAM_MAX_VARS"))


def stream_token_ttl() -> float:
    return float(_get("OBSERVERS_STREAM_TOKEN_TTL"))


def stream_authorizer() -> str:
    return str(_get("OBSERVERS_STREAM_AUTHORIZER"))


def stream_gc_freeze() -> bool:
    return bool(_get("OBSERVERS_STREAM_GC_FREEZE"))


def stream_max_per(holder: str) -> int:
    """Streams one ``holder`` ("user", "token" or "address") may hold open in a process."""
    return int(_get(f"OBSERVERS_STREAM_MAX_PER_{holder.upper()}"))


def stream_glob_min_prefix() -> int:
    return int(_get("OBSERVERS_STREAM_GLOB_MIN_PREFIX"))


def stream_write_timeout() -> float:
    return float(_get("OBSERVERS_STREAM_WRITE_TIMEOUT"))


def stream_reauthorize_interval() -> float:
    return float(_get("OBSERVERS_STREAM_REAUTHORIZE_INTERVAL"))


def stream_allowed_origins() -> list[str]:
    origins = _get("OBSERVERS_STREAM_ALLOWED_ORIGINS")
    return [] if isinstance(origins, str) else list(origins)  # a string allows nothing (E011)

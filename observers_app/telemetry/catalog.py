"""Every figure the hub shows, each with one label and one help text.

The admin's stats page and its live dashboard, the ``/metrics`` HELP lines and the docs' table all
read this catalog: a figure is named and explained here once.
"""

from typing import NamedTuple


class Figure(NamedTuple):
    label: str
    help: str


# Read live by get_stats, in display order.
LIVE = {
    "active_observers": Figure(
        "Active observers",
        "Observers a notification can call now: not quarantined, with no owner or a live one.",
    ),
    "monitored_processes": Figure(
        "Live owners (processes and leases)",
        "Owners alive now: leases that run, processes that hold their lock.",
    ),
    "queue_backlog": Figure(
        "Notifications waiting in the dispatch queue",
        "Dispatch messages in the broker's dispatch queue now (-1 when the broker cannot say).",
    ),
    "dead_letters": Figure(
        "Dead letters waiting",
        "Messages parked as poison, waiting for a replay (admin action, observers_replay or "
        "manager.replay_dead_letters).",
    ),
    "uptime_ms": Figure("Counters running for (ms)", "Milliseconds since the first counter was written."),
}

# Totals shared by every process (telemetry.counters), in display order.
COUNTERS = {
    "notifications_dispatched": Figure(
        "Notifications dispatched", "Notifications a worker numbered and fanned out to their observers."
    ),
    "notifications_sent": Figure("Callbacks called", "Callbacks called, those that failed included."),
    "notifications_failed": Figure(
        "Callbacks failed", "Callbacks that raised or ran past OBSERVERS_CALLBACK_TIME_LIMIT."
    ),
    "empty_dispatches": Figure(
        "Dispatches that found no observer",
        "Notifications sent on a cached 'has observers' that no live observer was left to receive.",
    ),
    "notifications_shed": Figure(
        "Notifications shed (queue or buffer full)",
        "Notifications dropped, oldest first: by the full dispatch queue, or by a process's full send "
        "buffer while the broker was unreachable. Never a durable one.",
    ),
    "shed_queue_full": Figure(
        "Shed queue found full",
        "Times the shed queue was found at OBSERVERS_SHED_QUEUE_MAX_LENGTH (no worker had counted it for "
        "long): what the dispatch queue shed past that was dropped by the broker uncounted.",
    ),
    "model_changes_refused": Figure(
        "Model field changes not notified",
        "Changes of observed model fields whose value the hub refused (over OBSERVERS_MAX_PAYLOAD_BYTES, "
        "not JSON, not storable): logged and skipped, the host's save went on.",
    ),
    "notifications_coalesced": Figure(
        "Notifications coalesced (latest value won)",
        "Notifications a coalescing observer skipped because a newer value of the variable was waiting.",
    ),
    "outbox_republished": Figure(
        "Outbox messages published by a worker",
        "Outbox rows a worker (or the sweep) published: durable notifications their caller did not "
        "publish within OBSERVERS_OUTBOX_GRACE (it died, or the broker was away), and held messages.",
    ),
    "messages_held": Figure(
        "Messages held for the broker",
        "Deliver pages the broker refused or could not take (a full deliver queue, the broker away), kept "
        "in the outbox table until it took them.",
    ),
    "messages_retried": Figure(
        "Messages retried after a transient fault",
        "Runs of dispatch, deliver and webhook messages that met the database or the broker away (or a "
        "full queue): held, then delivered again, for as long as the fault lasted; never parked for it.",
    ),
    "messages_parked": Figure(
        "Messages parked as dead letters",
        "Dispatch, deliver or webhook messages that failed by themselves (raised, or killed their worker "
        "process) OBSERVERS_MAX_DELIVERIES times.",
    ),
    "messages_replayed": Figure("Dead letters replayed", "Dead letters published again by a replay."),
    "history_replayed": Figure(
        "Notifications replayed from history",
        "Callbacks called with a kept notification again, by a history replay (manager.replay, the "
        "admin's replay, observers_replay_history), each with its original id.",
    ),
    "observers_added": Figure(
        "Observers added", "Observers registered (add_observer, add_webhook, streams)."
    ),
    "observers_removed": Figure(
        "Observers removed (all reasons)", "Observers deleted, for any reason below."
    ),
    "observers_reenabled": Figure(
        "Observers re-enabled after quarantine",
        "Quarantined observers taken back (reenable_observer, admin).",
    ),
    "removed_removed": Figure("Removed by remove_observer", "Observers their code (or the admin) removed."),
    "removed_owner_closed": Figure(
        "Removed: their owner closed", "Observers removed when their owner was closed (a clean exit)."
    ),
    "removed_owner_died": Figure(
        "Removed: their owner died",
        "Observers of a process owner that lost its lock (the process died) for OBSERVERS_OWNER_GRACE.",
    ),
    "removed_swept": Figure("Removed by the sweep", "Observers of leases that expired without being closed."),
    "removed_quarantined": Figure(
        "Quarantined after failing", "Observers that failed OBSERVERS_QUARANTINE_AFTER times in a row."
    ),
    "owners_removed": Figure(
        "Dead owners removed", "Owner rows the sweep deleted once their observers were gone."
    ),
    "cleanup_runs": Figure("Sweeps run", "Runs of the periodic sweep."),
    "streams_opened": Figure("Streams opened", "Server-Sent Events streams opened."),
    "streams_closed_slow": Figure(
        "Streams closed: client too slow",
        "Streams closed because their client fell twice its buffer behind, or read nothing for "
        "OBSERVERS_STREAM_WRITE_TIMEOUT.",
    ),
    "streams_closed_unauthorized": Figure(
        "Streams closed: no longer authorized",
        "Open streams closed because their token expired or was revoked, or their user logged out, was "
        "deactivated or lost the permission.",
    ),
    "streams_refused_limit": Figure(
        "Streams refused: client limit",
        "Streams refused (429) past their user's, token's or address's limit of open streams.",
    ),
    "stream_events_coalesced": Figure(
        "Stream events coalesced for slow clients",
        "Stream events replaced by a newer value of their variable while their client was behind.",
    ),
}

# What get_stats returns, in display order.
FIGURES = {**LIVE, **COUNTERS}

# The Prometheus series the hub's processes record from its signals (telemetry.metrics), with their
# HELP lines; the figures above are exposed as ``observers_stats_<name>`` besides them.
METRICS = {
    "observers_notify_seconds": "Time notify_observers spent checking for observers and publishing.",
    "observers_fanout_width": "Observers reached by one notification (estimated past its first page).",
    "observers_notify_to_callback_seconds": "From notify_observers to the end of one page's callbacks.",
    "observers_callbacks": "Callbacks called, by outcome.",
    "observers_sweeps": "Sweeps of dead owners run.",
    "observers_removals": "Observers removed or quarantined, by reason.",
    "observers_added": "Observers added.",
}

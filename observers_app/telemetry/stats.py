"""The hub's figures now: the shared counters plus live counts and the dispatch queue's depth."""

from typing import Any

from celery import current_app

from .. import aio, wiring
from ..models import DeadLetter, Observer, Owner
from . import counters


def get_stats() -> dict[str, int]:
    """Global figures: counters shared by all processes plus live counts (docs/operating.md, the figures)."""
    stats, uptime_ms = counters.read()
    stats["active_observers"] = Observer.objects.live().count()
    stats["monitored_processes"] = Owner.objects.alive().count()
    stats["queue_backlog"] = dispatch_backlog()
    stats["dead_letters"] = DeadLetter.objects.count()
    stats["uptime_ms"] = uptime_ms
    return stats


aget_stats = aio.async_twin(get_stats)


def dispatch_backlog() -> int:
    """Notifications waiting in the dispatch queue now, or -1 if the broker cannot say."""
    try:
        with current_app.connection_for_write() as connection:
            channel: Any = connection.default_channel
            return int(channel.queue_declare(wiring.dispatch_queue().name, passive=True).message_count)
    except Exception:
        return -1

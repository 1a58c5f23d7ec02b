"""The worker's side of streams: the callback forwarding a notification to its web process's queue.

One broker message per notification per web process, not one per watcher.
"""

import json
import uuid
from typing import Any

from kombu import Exchange

from ..models import Observer
from ..publishing import broker
from ..registry import observer_callback

FORWARD_CALLBACK = "observers.streams.forward"
# A direct exchange: each web process binds its own queue under its process owner's id.
EXCHANGE = Exchange("observers.streams", type="direct", durable=False)
# Observer refs -> (owner id, pattern): an observer's owner and name never change, so they are read once.
_CACHE_MAX = 100_000
_observers: dict[str, tuple[str, str]] = {}


def queue_name(owner_id: uuid.UUID) -> str:
    """The queue a web process consumes its streams' notifications from."""
    return f"observers.streams.{owner_id}"


@observer_callback(name=FORWARD_CALLBACK, transport=True)
def forward(var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]) -> None:
    """Publish the notification to the stream observer's web process; its streams fan it out."""
    found = _owner_and_pattern(metadata["observer_ref"])
    if found is None:
        return  # removed since this page was read: its process no longer wants it
    owner_id, pattern = found
    body = json.dumps(
        {
            "pattern": pattern,
            "var_id": var_id,
            "old_value": old_value,
            "new_value": new_value,
            "metadata": metadata,
        },
        separators=(",", ":"),
    )
    # Not persistent: a stream only wants what happens while it is connected; a dead process's queue is
    # gone, and the broker drops what no queue is bound for. Confirmed: one the broker does not take
    # fails the page, not the observer (a transport callback), and the page is delivered again.
    broker.publish_transient(EXCHANGE, owner_id, body)


def _owner_and_pattern(ref: str) -> tuple[str, str] | None:
    found = _observers.get(ref)
    if found is None:
        row = Observer.objects.filter(id=ref, owner__isnull=False).values_list("owner_id", "var_id").first()
        if row is None:
            return None
        if len(_observers) >= _CACHE_MAX:
            _observers.clear()
        found = _observers[ref] = (str(row[0]), row[1])
    return found

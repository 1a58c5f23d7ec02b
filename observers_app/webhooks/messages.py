"""Webhook messages: the JSON body POSTed for a notification, its id, and the task that sends it."""

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from .. import wiring
from ..publishing import broker

CHANGED = "variable.changed"
TEST = "webhook.test"
# Message ids derive from (notification, observer): a notification delivered twice (at-least-once)
# reaches the endpoint with the same webhook-id, so the receiver can drop the repeat.
_MESSAGE_NAMESPACE = uuid.UUID("6f1c1b0e-4f5e-4c44-9d0c-6a9f0f2b7e01")


def message_id(notification_id: str, observer_ref: str) -> str:
    return "msg_" + uuid.uuid5(_MESSAGE_NAMESPACE, f"{notification_id}/{observer_ref}").hex


def body(event_type: str, var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]) -> str:
    """The Standard Webhooks payload shape: type, timestamp and the notification as data."""
    return json.dumps(
        {
            "type": event_type,
            "timestamp": datetime.now(UTC).isoformat(),
            "data": {"variable": var_id, "old": old_value, "new": new_value, "metadata": metadata},
        },
        separators=(",", ":"),
    )


def enqueue_change(var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]) -> None:
    """Queue the POST of one notification to one webhook observer (named in ``metadata``)."""
    ref = metadata["observer_ref"]
    payload = body(CHANGED, var_id, old_value, new_value, metadata)
    # The hub's lean publish: the fan-out's callback loop only hands the message to the broker (and
    # has it confirmed, before the page's message is acknowledged).
    enqueue(ref, message_id(metadata["notification_id"], ref), payload, attempt=1)


def task_message(observer_ref: str, message_id: str, payload: str, attempt: int) -> tuple[str, str]:
    """The webhook task's message for one attempt: (task name, JSON arguments)."""
    return wiring.WEBHOOK_TASK, json.dumps(
        [observer_ref, message_id, payload, attempt], separators=(",", ":")
    )


def enqueue(observer_ref: str, message_id: str, payload: str, *, attempt: int, countdown: float = 0) -> None:
    """Queue one attempt of a message, not run before ``countdown`` seconds; returns once the broker
    confirmed it (raises BrokerUnavailable if it did not)."""
    broker.publish_confirmed([task_message(observer_ref, message_id, payload, attempt)], countdown=countdown)

"""The callback of every webhook observer: registered under a fixed name that stored rows carry."""

from typing import Any

from ..models import WebhookEndpoint
from ..registry import observer_callback
from . import messages


@observer_callback(name=WebhookEndpoint.CALLBACK, transport=True)
def post_webhook(var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]) -> None:
    """Queue the POST, so no slow endpoint holds the fan-out. A broker that does not take it fails the
    page, not the observer (a transport callback)."""
    messages.enqueue_change(var_id, old_value, new_value, metadata)

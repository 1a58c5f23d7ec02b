"""The hub's own observer callbacks (found by the registry's autodiscovery, like any app's)."""

from typing import Any

from .registry import observer_callback
from .webhooks import messages


@observer_callback(name=messages.WEBHOOK_CALLBACK)
def post_webhook(var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]) -> None:
    """Every webhook observer's callback: queue the POST, so no slow endpoint holds the fan-out."""
    messages.enqueue_change(var_id, old_value, new_value, metadata)

"""Factories for hub rows the tests need in bulk."""

import uuid
from typing import Any

from observers_app.models import Observer
from observers_app.registry import name_of
from tests.testapp.callbacks import record


def unique_var(prefix: str = "var") -> str:
    return f"{prefix}:{uuid.uuid4().hex[:12]}"


def make_observers(var_id: str, count: int, *, callback: str | None = None) -> list[uuid.UUID]:
    """Insert ``count`` observers at once, as a large deployment would have them."""
    name = callback or name_of(record)
    rows = Observer.objects.bulk_create(
        [Observer(var_id=var_id, callback=name) for _ in range(count)], batch_size=1000
    )
    return [row.id for row in rows]


def notification(var_id: str, **fields: Any) -> dict[str, Any]:
    """A notification as a worker reads it from a dispatch message, numbered 1."""
    return {
        "var_id": var_id,
        "old_value": 1,
        "new_value": 2,
        "metadata": None,
        "notification_id": str(uuid.uuid4()),
        "seq": 1,
        "notified_at": 0.0,
        **fields,
    }

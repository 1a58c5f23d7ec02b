"""Factories for hub rows the tests need in bulk."""

import uuid
from typing import Any

from django.urls import reverse

from observers_app import manager
from observers_app.models import DeadLetter, Observer
from observers_app.publishing import presence
from observers_app.registry import name_of
from tests.testapp.callbacks import record


def unique_var(prefix: str = "var") -> str:
    return f"{prefix}:{uuid.uuid4().hex[:12]}"


def make_observers(var_id: str, count: int, *, callback: str | None = None) -> list[uuid.UUID]:
    """Insert ``count`` observers at once, as a large deployment would have them (behind the hub's back:
    this process is told, no other's view is)."""
    name = callback or name_of(record)
    rows = Observer.objects.bulk_create(
        [Observer(var_id=var_id, callback=name) for _ in range(count)], batch_size=1000
    )
    presence.remember(var_id)
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


def hub_admin_pages() -> tuple[str, list[str]]:
    """Rows for every page of the hub in the admin to show, and those pages' paths: the admin's index,
    each model's list and a change page, the inspect, stats and replay pages. Returns the observed
    variable too (two observers: one durable, one of a lease)."""
    var = unique_var("page")
    ref = manager.add_observer(var, record)
    manager.add_observer(var, record, owner=(owner := manager.open_owner("page-client", ttl_s=300)))
    hook = manager.add_webhook(unique_var("page-hook"), "http://127.0.0.1:9/never-called")
    letter = DeadLetter.objects.create(task_id="t", task="observers.deliver", args="[]", deliveries=5)
    return var, [
        reverse("admin:index"),
        reverse("admin:observers_app_observer_changelist"),
        reverse("admin:observers_app_observer_change", args=[ref]),
        reverse("admin:observers_inspect", kwargs={"var_id": var}),
        reverse("admin:observers_stats"),
        reverse("admin:observers_app_owner_changelist"),
        reverse("admin:observers_app_owner_change", args=[owner.id]),
        reverse("admin:observers_app_variablestate_changelist"),
        reverse("admin:observers_app_variablestate_change", args=[var]),
        reverse("admin:observers_app_deadletter_changelist"),
        reverse("admin:observers_app_deadletter_change", args=[letter.pk]),
        reverse("admin:observers_app_webhookendpoint_changelist"),
        reverse("admin:observers_app_webhookendpoint_change", args=[hook]),
        reverse("admin:observers_app_observer_replay", args=[ref]),
        reverse("admin:observers_app_webhookendpoint_replay", args=[hook]),
    ]

"""Webhook endpoints in the admin, staff only: their health, recent attempts, a test event, re-enable
(which offers to replay what the endpoint missed), a history replay."""

import uuid
from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html

from ..history import admin as history_admin
from ..models import WebhookAttempt, WebhookEndpoint
from ..observers.quarantine import reenable_observer
from ..observers.removals import remove_observer
from .api import send_test_webhook

REPLAY_URL = "admin:observers_app_webhookendpoint_replay"


def _missed_since(
    last_success_at: datetime | None, created_at: datetime, failing_since: datetime | None
) -> datetime:
    """Where a disabled endpoint's replay starts: its last success (written at most once a minute) or,
    never reached, its creation. Its first failure is too late: the notification that failed first
    was notified before its POST failed (and the retries still due when it was disabled were given
    up). So the replay may send some the endpoint had: with the same webhook-id, which it drops."""
    since = last_success_at or created_at
    return min(since, failing_since) if failing_since else since


class WebhookAttemptInline(admin.TabularInline):
    """The endpoint's recent attempts, newest first (at most OBSERVERS_WEBHOOK_ATTEMPTS_KEPT are kept)."""

    model = WebhookAttempt
    fields = ("created_at", "message_id", "attempt", "status_code", "latency_ms", "error", "next_retry_at")
    readonly_fields = fields
    ordering = ("-id",)
    extra = 0
    can_delete = False
    verbose_name_plural = "recent attempts"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DisabledFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "disabled"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "Enabled"), ("yes", "Disabled")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("yes", "no"):
            return queryset.filter(observer__quarantined_at__isnull=self.value() == "no")
        return queryset


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Never shows the signing secret: the hub shows it once, to add_webhook's caller."""

    list_display = ("url", "variable", "status", "failures", "failing_since", "last_success_at", "created_at")
    list_select_related = ("observer",)
    list_filter = (DisabledFilter,)
    ordering = ("-created_at",)
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    fields = ("url", "observer_link", "status", "failures", "failing_since", "last_success_at", "created_at")
    readonly_fields = fields
    inlines = (WebhookAttemptInline,)
    actions = ("send_test_event", "reenable_endpoints", "replay_history", "remove_endpoints")

    @admin.display(description="variable")
    def variable(self, endpoint: WebhookEndpoint) -> str:
        return endpoint.observer.var_id + (" (glob)" if endpoint.observer.is_glob else "")

    @admin.display(description="observer")
    def observer_link(self, endpoint: WebhookEndpoint) -> str:
        url = reverse("admin:observers_app_observer_change", args=[endpoint.observer_id])
        return format_html('<a href="{}">{}</a>', url, endpoint.observer_id)

    @admin.display(description="status")
    def status(self, endpoint: WebhookEndpoint) -> str:
        if endpoint.observer.quarantined_at is not None:
            return f"disabled: {endpoint.observer.last_error}"
        return "failing" if endpoint.failures else "active"

    @admin.action(description="Send a test event to the selected endpoints", permissions=["change"])
    def send_test_event(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        sent = sum(send_test_webhook(ref) for ref in queryset.values_list("observer_id", flat=True))
        self.message_user(request, f"Sent a test event to {sent} endpoints.", messages.SUCCESS)

    @admin.action(description="Re-enable the selected disabled endpoints", permissions=["change"])
    def reenable_endpoints(
        self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]
    ) -> HttpResponse | None:
        disabled = queryset.filter(observer__quarantined_at__isnull=False).values_list(
            "observer_id", "last_success_at", "created_at", "failing_since"
        )
        missed_since = {
            ref: _missed_since(last_success_at, created_at, failing_since)
            for ref, last_success_at, created_at, failing_since in disabled
        }
        enabled = {ref: since for ref, since in missed_since.items() if reenable_observer(ref)}
        self.message_user(request, f"Re-enabled {len(enabled)} endpoints.", messages.SUCCESS)
        return history_admin.offer_replay(self, request, REPLAY_URL, enabled)

    @admin.action(description="Replay history to the selected one", permissions=["change"])
    def replay_history(
        self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]
    ) -> HttpResponse | None:
        refs = list(queryset.values_list("observer_id", flat=True)[:2])
        return history_admin.replay_one(self, request, refs, REPLAY_URL)

    def get_urls(self) -> list[Any]:
        replay = path(
            "<uuid:ref>/replay/",
            self.admin_site.admin_view(self.replay_view),
            name=REPLAY_URL.removeprefix("admin:"),
        )
        return [replay, *super().get_urls()]

    def replay_view(self, request: HttpRequest, ref: uuid.UUID) -> HttpResponse:
        done_url = reverse("admin:observers_app_webhookendpoint_changelist")
        return history_admin.replay_view(self, request, ref, done_url=done_url)

    @admin.action(description="Remove the selected endpoints", permissions=["change"])
    def remove_endpoints(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        rows = queryset.values_list("observer_id", "observer__var_id")
        removed = sum(remove_observer(var_id, ref) for ref, var_id in rows)
        self.message_user(request, f"Removed {removed} endpoints.", messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # add_webhook, which vets the URL and shows the secret once

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Edited only through the actions (which go through the manager), never the form.
        return obj is None and super().has_change_permission(request)

"""The hub in Django's admin, staff only: observers, owners, variables, the stats dashboard, inspect pages.

List pages stay fast on millions of rows: counts are capped or estimated, filters and sorting use
indexed columns, and no page loads an unbounded queryset.
"""

import json
import uuid
from functools import cached_property
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import BooleanField, Case, OuterRef, Q, QuerySet, Subquery, Value, When
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from . import manager, registry, validation
from .exceptions import InvalidName
from .history import admin as history_admin
from .models import DeadLetter, Observer, Owner, VariableState
from .telemetry import dashboard
from .webhooks import admin as webhooks_admin  # noqa: F401 (registers the webhook endpoints' admin)
from .worker import poison

COUNT_CAP = 10_000
REPLAY_URL = "admin:observers_app_observer_replay"
# The inspect page's recent notifications (the history's newest entries), each value cut to this much.
RECENT_NOTIFICATIONS = 50
SHOWN_JSON_CHARS = 200


class CappedCountPaginator(Paginator):
    """Counts at most COUNT_CAP + 1 rows; an unfiltered PostgreSQL table uses the planner's estimate."""

    @cached_property
    def count(self) -> int:
        queryset: QuerySet[Any] = self.object_list  # type: ignore[assignment]
        if connection.vendor == "postgresql" and not queryset.query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE relname = %s",
                    [queryset.model._meta.db_table],
                )
                row = cursor.fetchone()
            if row and row[0] > COUNT_CAP:
                return int(row[0])
        return queryset[: COUNT_CAP + 1].count()


def _inspect_link(var_id: str) -> str:
    try:
        url = reverse("admin:observers_inspect", kwargs={"var_id": var_id})
    except NoReverseMatch:  # a name stored before names were checked (a newline): shown, not linked
        return format_html("{}", repr(var_id))
    return format_html('<a href="{}">{}</a>', url, var_id)


class AliveFilter(admin.SimpleListFilter):
    title = "alive"
    parameter_name = "alive"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Alive"), ("no", "Dead owner")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        alive = Q(owner__isnull=True) | Q(owner__in=Owner.objects.alive())
        if self.value() == "yes":
            return queryset.filter(alive)
        if self.value() == "no":
            return queryset.exclude(alive)
        return queryset


class QuarantinedFilter(admin.SimpleListFilter):
    title = "quarantined"
    parameter_name = "quarantined"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Quarantined"), ("no", "Not quarantined")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("yes", "no"):
            return queryset.filter(quarantined_at__isnull=self.value() == "no")
        return queryset


class CallbackFilter(admin.SimpleListFilter):
    """The registered callbacks of this process: no scan of the observers table for distinct names."""

    title = "callback"
    parameter_name = "callback"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in registry.names()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(callback=self.value()) if self.value() else queryset


class PrefixSearchMixin:
    """Search by exact value, or by prefix when the term ends with ``*``: both use an index."""

    search_column = ""

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Any], search_term: str) -> Any:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            validation.check_name(term, what="search term")
        except InvalidName:  # no name holds it (a NUL would even be refused by PostgreSQL)
            return queryset.none(), False
        if term.endswith("*"):
            return queryset.filter(**{f"{self.search_column}__startswith": term[:-1]}), False
        return queryset.filter(**{self.search_column: term}), False


@admin.register(Observer)
class ObserverAdmin(PrefixSearchMixin, admin.ModelAdmin):
    list_display = (
        "variable",
        "callback",
        "owner_link",
        "alive",
        "age",
        "failures",
        "quarantined",
        "last_notified",
    )
    list_filter = (AliveFilter, QuarantinedFilter, CallbackFilter)
    search_fields = ("var_id",)
    search_column = "var_id"
    search_help_text = "Exact variable id, or a prefix ending with *"
    sortable_by = ("variable",)
    ordering = ("-created_at",)
    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    actions = ("remove_observers", "reenable_observers", "replay_history", "send_test_notification")
    change_list_template = "admin/observers_app/observer/change_list.html"
    readonly_fields = [f.name for f in Observer._meta.fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Observer]:
        last_notified = VariableState.objects.filter(var_id=OuterRef("var_id")).values("last_notified_at")[:1]
        return (
            super()
            .get_queryset(request)
            .select_related("owner")
            .annotate(
                owner_alive=Case(
                    When(owner__isnull=True, then=Value(True)),
                    When(owner__in=Owner.objects.alive(), then=Value(True)),
                    default=Value(False),
                    output_field=BooleanField(),
                ),
                variable_last_notified=Subquery(last_notified),
            )
        )

    @admin.display(description="variable", ordering="var_id")
    def variable(self, observer: Observer) -> str:
        return format_html("{} {}", _inspect_link(observer.var_id), "(glob)" if observer.is_glob else "")

    @admin.display(description="owner")
    def owner_link(self, observer: Observer) -> str:
        if observer.owner is None:
            return "durable"
        url = reverse("admin:observers_app_owner_change", args=[observer.owner_id])
        return format_html('<a href="{}">{}</a>', url, observer.owner.name)

    @admin.display(boolean=True)
    def alive(self, observer: Any) -> bool:
        return bool(observer.owner_alive)

    @admin.display(description="age")
    def age(self, observer: Observer) -> str:
        return str(timezone.now() - observer.created_at).split(".")[0]

    @admin.display(boolean=True)
    def quarantined(self, observer: Observer) -> bool:
        return observer.quarantined_at is not None

    @admin.display(description="last notified")
    def last_notified(self, observer: Any) -> Any:
        notified = observer.variable_last_notified
        return notified if notified and notified >= observer.created_at else "-"

    @admin.action(description="Remove selected observers", permissions=["remove"])
    def remove_observers(self, request: HttpRequest, queryset: QuerySet[Observer]) -> None:
        removed = sum(
            manager.remove_observer(var_id, ref) for ref, var_id in queryset.values_list("id", "var_id")
        )
        self.message_user(request, f"Removed {removed} observers.", messages.SUCCESS)

    @admin.action(description="Re-enable selected quarantined observers", permissions=["change"])
    def reenable_observers(self, request: HttpRequest, queryset: QuerySet[Observer]) -> HttpResponse | None:
        quarantined = dict(queryset.filter(quarantined_at__isnull=False).values_list("id", "quarantined_at"))
        enabled = {ref: since for ref, since in quarantined.items() if manager.reenable_observer(ref)}
        self.message_user(request, f"Re-enabled {len(enabled)} observers.", messages.SUCCESS)
        return history_admin.offer_replay(self, request, REPLAY_URL, enabled)

    @admin.action(description="Replay history to the selected one", permissions=["change"])
    def replay_history(self, request: HttpRequest, queryset: QuerySet[Observer]) -> HttpResponse | None:
        return history_admin.replay_one(
            self, request, list(queryset.values_list("id", flat=True)[:2]), REPLAY_URL
        )

    @admin.action(
        description="Send a test notification to the selected observers' variables", permissions=["change"]
    )
    def send_test_notification(self, request: HttpRequest, queryset: QuerySet[Observer]) -> None:
        var_ids = set(queryset.filter(is_glob=False).values_list("var_id", flat=True))
        for var_id in var_ids:
            manager.notify_observers(
                var_id, None, "admin test", {"admin_test": True, "by": request.user.get_username()}
            )
        self.message_user(request, f"Sent a test notification to {len(var_ids)} variables.", messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_remove_permission(self, request: HttpRequest) -> bool:
        """Removing (through the manager, not the delete view) needs the model's delete permission."""
        return request.user.has_perm(f"{self.opts.app_label}.{get_permission_codename('delete', self.opts)}")

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("stats/", view(self.stats_view), name="observers_stats"),
            path("inspect/<path:var_id>/", view(self.inspect_view), name="observers_inspect"),
            path("<uuid:ref>/replay/", view(self.replay_view), name=REPLAY_URL.removeprefix("admin:")),
            *super().get_urls(),
        ]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Observers are edited only through the actions (which go through the manager), never the form.
        return obj is None and super().has_change_permission(request)

    def stats_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Observers hub: stats",
            "figures": dashboard.labelled(manager.get_stats()),
            "chart": dashboard.stats_chart(),
            "stream_url": f"{reverse('observers:stream')}?var={dashboard.VARIABLE}",
            "stream_variable": dashboard.VARIABLE,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/observers_app/stats.html", context)

    def replay_view(self, request: HttpRequest, ref: uuid.UUID) -> HttpResponse:
        done_url = reverse("admin:observers_app_observer_changelist")
        return history_admin.replay_view(self, request, ref, done_url=done_url)

    def inspect_view(self, request: HttpRequest, var_id: str) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            inspect = manager.inspect_variable(var_id, limit=500)
        except InvalidName as exc:  # no variable can have this name: nothing to show
            raise Http404(str(exc)) from None
        context = {
            **self.admin_site.each_context(request),
            "title": f"Variable {var_id}",
            "inspect": inspect,
            "opts": self.model._meta,
        }
        if request.user.has_perm(f"{self.opts.app_label}.view_historyentry"):
            context["history"] = _recent_history(var_id)
        return TemplateResponse(request, "admin/observers_app/inspect.html", context)


def _recent_history(var_id: str) -> dict[str, Any]:
    """The variable's newest kept notifications, newest first, their values as short JSON text."""
    kept = manager.history(var_id, limit=RECENT_NOTIFICATIONS)
    rows = [
        {
            "seq": entry.seq,
            "at": entry.at,
            "notification_id": entry.notification_id,
            "old": _short_json(entry.old_value),
            "new": _short_json(entry.new_value),
            "metadata": _short_json(entry.metadata),
            "observers": entry.observers,
        }
        for entry in reversed(kept.entries)
    ]
    return {"epoch": kept.epoch, "entries": rows}


def _short_json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= SHOWN_JSON_CHARS else text[: SHOWN_JSON_CHARS - 1] + "…"


class OwnedObserverInline(admin.TabularInline):
    model = Observer
    fields = ("var_id", "callback", "failures", "quarantined_at", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = "observers (the first 50)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Observer]:
        queryset = super().get_queryset(request)
        return queryset.filter(id__in=Subquery(queryset.order_by("id").values("id")[:50]))

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Owner)
class OwnerAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "host", "pid", "alive", "created_at", "expires_at", "closed_at")
    list_filter = ("kind",)
    search_fields = ("name",)
    ordering = ("-created_at",)
    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    inlines = (OwnedObserverInline,)
    readonly_fields = [f.name for f in Owner._meta.fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Owner]:
        alive = Owner.objects.alive().values("id")
        return (
            super()
            .get_queryset(request)
            .annotate(
                is_alive=Case(
                    When(id__in=alive, then=Value(True)), default=Value(False), output_field=BooleanField()
                )
            )
        )

    @admin.display(boolean=True)
    def alive(self, owner: Any) -> bool:
        return bool(owner.is_alive)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a cascade would drop its observers without recording why: close or sweep instead


@admin.register(VariableState)
class VariableAdmin(PrefixSearchMixin, admin.ModelAdmin):
    """The variables overview: the most observed first, with their sequence and last notification."""

    list_display = ("variable", "observer_count", "seq", "last_notified_at")
    search_fields = ("var_id",)
    search_column = "var_id"
    search_help_text = "Exact variable id, or a prefix ending with *"
    ordering = ("-observer_count", "var_id")
    sortable_by = ("observer_count",)
    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    readonly_fields = ("var_id", "seq", "last_notified_at", "observer_count")

    @admin.display(description="variable", ordering="var_id")
    def variable(self, state: VariableState) -> str:
        return _inspect_link(state.var_id)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    """Messages parked after OBSERVERS_MAX_DELIVERIES failed runs: why, and a replay once fixed."""

    list_display = ("parked_at", "task", "task_id", "deliveries", "short_reason")
    list_filter = ("task",)
    ordering = ("-parked_at",)
    readonly_fields = ("task_id", "task", "args", "deliveries", "reason", "parked_at")
    actions = ("replay",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="reason")
    def short_reason(self, letter: DeadLetter) -> str:
        return letter.reason[:120]

    @admin.action(description="Replay selected dead letters (publish them again)", permissions=["change"])
    def replay(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        replayed = poison.replay_dead_letters(list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"Replayed {replayed} message(s).", messages.SUCCESS)

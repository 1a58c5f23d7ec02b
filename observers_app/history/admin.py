"""The admin's replay form, shared by the observers' and the webhook endpoints' pages: from which point
(a time, or a seq of a plain variable) the kept history is sent again to one observer."""

import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ..exceptions import ReplayRefused
from ..models import Observer
from .replay import replay


class ReplayForm(forms.Form):
    since_time = forms.DateTimeField(
        required=False,
        label="From the time",
        help_text="The notifications at or after it (YYYY-MM-DD HH:MM:SS, in the site's time zone).",
    )
    since_seq = forms.IntegerField(
        required=False,
        min_value=1,
        label="Or from the seq",
        help_text="That notification of the variable and the later ones (not for a glob observer).",
    )

    def __init__(self, *args: Any, glob: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if glob:
            del self.fields["since_seq"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        given = [name for name in ("since_time", "since_seq") if cleaned.get(name) is not None]
        if len(given) != 1:
            raise forms.ValidationError("Give a time or a seq to replay from (one of them).")
        return cleaned

    def since(self) -> int | datetime:
        since: int | datetime = self.cleaned_data.get("since_time") or self.cleaned_data["since_seq"]
        return since


def replay_url(url_name: str, ref: uuid.UUID, since: datetime | None = None) -> str:
    """The replay form of observer ``ref`` at admin URL ``url_name``, prefilled with ``since``."""
    url = reverse(url_name, args=[ref])
    return f"{url}?{urlencode({'since': since.isoformat()})}" if since is not None else url


def offer_replay(
    model_admin: admin.ModelAdmin, request: HttpRequest, url_name: str, missed_since: dict[uuid.UUID, Any]
) -> HttpResponseRedirect | None:
    """After a re-enable: one observer goes straight to its replay form, prefilled with ``missed_since``
    (when it began to miss notifications); several are told how to replay each."""
    if len(missed_since) == 1:
        [(ref, since)] = missed_since.items()
        return HttpResponseRedirect(replay_url(url_name, ref, since))
    if missed_since:
        model_admin.message_user(
            request,
            "To send them what they missed meanwhile, replay each one's history (the action "
            "'Replay history to the selected one').",
            messages.INFO,
        )
    return None


def replay_one(
    model_admin: admin.ModelAdmin, request: HttpRequest, refs: list[uuid.UUID], url_name: str
) -> HttpResponseRedirect | None:
    """The replay action: to the form of the one selected observer."""
    if len(refs) != 1:
        model_admin.message_user(request, "Select exactly one to replay its history.", messages.WARNING)
        return None
    return HttpResponseRedirect(replay_url(url_name, refs[0]))


def replay_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, ref: uuid.UUID, *, done_url: str
) -> HttpResponse:
    """The form (GET, prefilled from ``?since=``), then the replay (POST): staff with the change
    permission of ``model_admin``'s model only."""
    if not model_admin.has_change_permission(request):
        raise PermissionDenied
    # Only a row of that admin's own model (an endpoint's page replays only to endpoints).
    if not model_admin.get_queryset(request).filter(pk=ref).exists():
        raise Http404(f"no {model_admin.opts.verbose_name} has the ref {ref}")
    observer = Observer.objects.filter(id=ref).first()
    if observer is None:
        raise Http404(f"no observer has the ref {ref}")
    if request.method == "POST":
        form = ReplayForm(request.POST, glob=observer.is_glob)
        if form.is_valid():
            try:
                replayed = replay(ref, since=form.since())
            except ReplayRefused as exc:
                form.add_error(None, str(exc))
            else:
                text = f"Queued {replayed.notifications} notifications of {replayed.variables} variables."
                if not replayed.complete:
                    text += " The history kept did not reach back that far: older ones were pruned."
                level = messages.SUCCESS if replayed.complete else messages.WARNING
                model_admin.message_user(request, text, level)
                return HttpResponseRedirect(done_url)
    else:
        try:
            since = parse_datetime(request.GET.get("since", ""))
        except ValueError:  # a well-formed but impossible time: the form starts empty
            since = None
        initial = {"since_time": timezone.localtime(since)} if since and timezone.is_aware(since) else {}
        form = ReplayForm(initial=initial, glob=observer.is_glob)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Replay history to {observer}",
        "observer": observer,
        "form": form,
        "done_url": done_url,
        "opts": model_admin.model._meta,
    }
    return TemplateResponse(request, "admin/observers_app/replay.html", context)

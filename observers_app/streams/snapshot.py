"""The current values a stream sends first: session-store variables and observed model fields.

Each value is read with its notification ``seq`` in one statement (one consistent view).
"""

from typing import Any
from urllib.parse import unquote

from django.db.models import CharField, Field, OuterRef, Subquery, Value
from django.db.models.functions import Concat, Replace

from .. import validation
from ..globs import glob_matches
from ..models import Variable, VariableState
from ..sources import model_fields
from ..telemetry import dashboard
from . import messages
from .messages import StreamEvent

SESSION_PREFIX = "session:"
# Values one pattern's snapshot sends at most (a pattern may match many session variables).
PATTERN_LIMIT = 1000


def read(var_ids: list[str]) -> list[StreamEvent]:
    """The snapshot of each readable name and session pattern among ``var_ids`` (others have none)."""
    events: list[StreamEvent] = []
    for var_id in var_ids:
        if var_id == dashboard.VARIABLE:
            events.append(messages.dashboard(dashboard.reading(), None, snapshot=True))
        elif var_id.startswith(SESSION_PREFIX):
            events += _session_variables(var_id)
        elif "*" not in var_id:
            events += _model_field(var_id)
    return events + _positions([v for v in var_ids if "*" not in v and v not in {e.var_id for e in events}])


def _positions(var_ids: list[str]) -> list[StreamEvent]:
    """Names with no value to read (or not set yet): their seq only, where their changes continue."""
    seqs = dict(VariableState.objects.filter(var_id__in=var_ids).values_list("var_id", "seq"))
    return [
        messages.snapshot(name, None, seq=seqs.get(name, 0), version=None, absent=True) for name in var_ids
    ]


def _seq_of(var_id: Any) -> Subquery:
    return Subquery(VariableState.objects.filter(var_id=var_id).values("seq")[:1])


def _session_variables(var_id: str) -> list[StreamEvent]:
    """A session variable's hub name escapes ``%`` and ``:`` in its session id
    (sessions.variable_id): the name is built here the same way, in the statement."""
    full_id = Concat(
        Value(SESSION_PREFIX), _escaped("session_id"), Value(":"), "name", output_field=CharField()
    )
    rows = Variable.objects.annotate(full_id=full_id)
    literal = var_id.split("*", 1)[0]
    rows = rows.filter(full_id__startswith=literal) if "*" in var_id else rows.filter(full_id=var_id)
    session_part = literal[len(SESSION_PREFIX) :]
    if ":" in session_part:  # the session id is known: its index narrows the read
        rows = rows.filter(session_id=_unescaped(session_part.split(":", 1)[0]))
    found = rows.annotate(seq=_seq_of(OuterRef("full_id"))).values_list(
        "full_id", "value", "deleted", "version", "seq"
    )
    return [
        messages.snapshot(name, value, seq=seq or 0, version=version, absent=deleted)
        for name, value, deleted, version, seq in found.order_by("full_id")[:PATTERN_LIMIT]
        if glob_matches(var_id, name)
    ]


def _escaped(column: str) -> Replace:
    """``column`` as validation.name_part escapes it (``%`` first, then ``:``)."""
    percent = Replace(column, Value("%"), Value("%25"), output_field=CharField())
    return Replace(percent, Value(":"), Value("%3A"), output_field=CharField())


def _unescaped(part: str) -> str | None:
    """The part ``validation.name_part`` escaped to ``part``; None if no part escapes to it."""
    raw = unquote(part)
    return raw if validation.name_part(raw) == part else None


def _model_field(var_id: str) -> list[StreamEvent]:
    """``<app_label>.<model>:<pk>:<field>`` of an observed model (see model_fields.model_variable_id)."""
    for model, fields in model_fields.observed_models().items():
        label = model._meta.label_lower
        if not var_id.startswith(f"{label}:") or ":" not in var_id[len(label) + 1 :]:
            continue
        escaped_pk, field_name = var_id[len(label) + 1 :].rsplit(":", 1)
        pk = _unescaped(escaped_pk)
        if field_name not in fields or pk is None:
            continue
        field = model._meta.get_field(field_name)
        assert isinstance(field, Field)  # observe_model accepts concrete fields only
        try:
            row = (
                model._base_manager.filter(pk=pk)
                .annotate(observers_seq=_seq_of(Value(var_id)))
                .values_list(field.attname, "observers_seq")
                .first()
            )
        except (ValueError, TypeError):  # a pk the field cannot hold: no such row
            return []
        if row is None:
            return []
        value = model_fields.field_json(field, row[0])
        return [messages.snapshot(var_id, value, seq=row[1] or 0, version=None)]
    return []

"""Observing model fields: every committed change of an observed field notifies its variable.

The variable of a field of a row is ``"<app_label>.<model>:<pk>:<field>"`` (``model_variable_id``), with
``%`` and ``:`` in the pk percent-escaped, so that a glob on one row never matches another.
Saves and deletes are caught with Django's model signals, old values as loaded (no extra query per
save); bulk writes, which send no signals, through ``ObservedQuerySet``, the manager an observed
model must use.
"""

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.db.models.signals import post_delete, post_init, post_save, pre_save

from .. import conf, validation
from ..exceptions import ObserversError, PayloadTooLarge
from ..publishing.notify import notify_observers
from ..telemetry import counters

logger = logging.getLogger(__name__)

_LOADED = "_observers_loaded"
_BATCH = 1000


@dataclass(frozen=True)
class _Observed:
    label: str
    fields: tuple[models.Field, ...]


_observed: dict[type[models.Model], _Observed] = {}


def observe_model(model: type[models.Model], *, fields: Sequence[str]) -> None:
    """Notify a variable per row and field when one of ``fields`` of ``model`` changes.

    Call it once, e.g. in your AppConfig.ready(). Give the model ``objects =
    ObservedQuerySet.as_manager()`` so that ``update()``, ``bulk_update()`` and ``bulk_create()``
    notify too.
    """
    resolved: list[models.Field] = []
    for name in fields:
        field = model._meta.get_field(name)
        if not isinstance(field, models.Field) or not field.concrete or field.many_to_many:
            raise ValueError(f"{model.__name__}.{name} is not a concrete field and cannot be observed")
        resolved.append(field)
    _observed[model] = _Observed(label=model._meta.label_lower, fields=tuple(resolved))
    uid = f"observers:{model._meta.label_lower}"
    post_init.connect(_remember_loaded, sender=model, weak=False, dispatch_uid=uid)
    pre_save.connect(_load_deferred, sender=model, weak=False, dispatch_uid=uid)
    post_save.connect(_notify_saved, sender=model, weak=False, dispatch_uid=uid)
    post_delete.connect(_notify_deleted, sender=model, weak=False, dispatch_uid=uid)


def observed_models() -> dict[type[models.Model], tuple[str, ...]]:
    return {model: tuple(f.name for f in spec.fields) for model, spec in _observed.items()}


def model_variable_id(model: type[models.Model], pk: Any, field_name: str) -> str:
    return _variable_id(model._meta.label_lower, pk, field_name)


def _variable_id(label: str, pk: Any, field_name: str) -> str:
    return f"{label}:{validation.name_part(str(pk))}:{field_name}"


_ENCODER = DjangoJSONEncoder(separators=(",", ":"))


def _json(value: Any, *, limit: int | None = None) -> Any:
    """``value`` as JSON values; PayloadTooLarge once its JSON passes ``limit`` characters, found
    without encoding it all (a string by its length; anything else encoded piece by piece)."""
    if value is None or isinstance(value, str | int | float | bool):
        if limit is not None and isinstance(value, str) and len(value) > limit:
            raise PayloadTooLarge(
                f"a value of {len(value)} characters, over OBSERVERS_MAX_PAYLOAD_BYTES={limit}"
            )
        return value
    if limit is None:
        return json.loads(_ENCODER.encode(value))
    chunks, size = [], 0
    for chunk in _ENCODER.iterencode(value):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"a value of over {limit} characters of JSON (OBSERVERS_MAX_PAYLOAD_BYTES)")
        chunks.append(chunk)
    return json.loads("".join(chunks))


def field_json(field: models.Field, value: Any, *, bounded: bool = False) -> Any:
    """The field's value as the database holds it, in JSON: an unsaved ``0`` of a DecimalField
    with two places is ``"0.00"``, as it will read back. ``bounded``: PayloadTooLarge for a value
    over OBSERVERS_MAX_PAYLOAD_BYTES, found without encoding all of it."""
    limit = conf.max_payload_bytes() if bounded else None
    try:
        value = field.to_python(value)
    except ValidationError:
        return _json(value, limit=limit)
    if (
        isinstance(field, models.DecimalField)
        and isinstance(value, Decimal)
        and field.decimal_places is not None
    ):
        value = value.quantize(Decimal(1).scaleb(-field.decimal_places))
    return _json(value, limit=limit)


def _values(instance: models.Model, fields: Iterable[models.Field]) -> dict[str, Any]:
    return {field.attname: field_json(field, getattr(instance, field.attname)) for field in fields}


def _notify(spec: _Observed, pk: Any, field: models.Field, old: Any, new: Any, event: str) -> None:
    """Notify a change of the field's variable. One the hub refuses (a value over the payload limit,
    not JSON, not storable; a pk too long for a name) is logged, counted and skipped: the host's
    write goes on."""
    error = new.error if isinstance(new, _Refused) else None
    if error is None:
        metadata = {"event": event, "model": spec.label, "pk": _json(pk), "field": field.name}
        try:
            notify_observers(_variable_id(spec.label, pk, field.name), old, new, metadata, ordered=True)
            return
        except ObserversError as exc:
            error = exc
    logger.error(
        "event=model_change_refused model=%s pk=%r field=%s error=%s", spec.label, pk, field.name, error
    )
    transaction.on_commit(lambda: counters.increment({"model_changes_refused": 1}), robust=True)


class _Refused:
    """A new value the hub refused before notifying it (too large to encode in full)."""

    def __init__(self, error: ObserversError) -> None:
        self.error = error


def _new_json(field: models.Field, value: Any) -> Any:
    """A new value in JSON, bounded: a value over OBSERVERS_MAX_PAYLOAD_BYTES is a _Refused."""
    try:
        return field_json(field, value, bounded=True)
    except PayloadTooLarge as exc:
        return _Refused(exc)


def _remember_loaded(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    deferred = instance.get_deferred_fields()
    fields = [f for f in _observed[sender].fields if f.attname not in deferred]
    instance.__dict__[_LOADED] = _values(instance, fields)


def _load_deferred(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    """Fields deferred at load have no known old value: read them, only then, before the save."""
    loaded = instance.__dict__.setdefault(_LOADED, {})
    missing = [f.attname for f in _observed[sender].fields if f.attname not in loaded]
    if missing and not instance._state.adding and instance.pk is not None:
        row = sender._base_manager.using(instance._state.db).filter(pk=instance.pk).values(*missing).first()
        by_attname = {f.attname: f for f in _observed[sender].fields}
        loaded.update({name: field_json(by_attname[name], value) for name, value in (row or {}).items()})


def _notify_saved(
    sender: type[models.Model],
    instance: models.Model,
    created: bool,
    update_fields: Any = None,
    **kwargs: Any,
) -> None:
    spec = _observed[sender]
    fields = [
        f
        for f in spec.fields
        if update_fields is None or f.name in update_fields or f.attname in update_fields
    ]
    loaded = instance.__dict__.setdefault(_LOADED, {})
    for field in fields:
        new = _new_json(field, getattr(instance, field.attname))
        if created:
            _notify(spec, instance.pk, field, None, new, "created")
        else:
            _notify(spec, instance.pk, field, loaded.get(field.attname), new, "updated")
        loaded[field.attname] = None if isinstance(new, _Refused) else new


def _notify_deleted(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    spec = _observed[sender]
    for field in spec.fields:
        old = _new_json(field, getattr(instance, field.attname))
        _notify(spec, instance.pk, field, None if isinstance(old, _Refused) else old, None, "deleted")


class ObservedQuerySet(models.QuerySet):
    """A queryset whose bulk writes notify like saves do: old values read in the same transaction.

    Use it as the observed model's default manager: ``objects = ObservedQuerySet.as_manager()``.
    """

    def _spec_fields(self, names: Iterable[str]) -> list[models.Field]:
        spec = _observed.get(self.model)
        names = set(names)
        return [f for f in spec.fields if f.name in names or f.attname in names] if spec else []

    def update(self, **kwargs: Any) -> int:
        fields = self._spec_fields(kwargs)
        if not fields:
            return super().update(**kwargs)
        spec, base = _observed[self.model], self.model._base_manager.using(self.db)
        attnames = [f.attname for f in fields]
        updated, after = 0, None
        with transaction.atomic(using=self.db):
            while True:
                page = self.order_by("pk") if after is None else self.order_by("pk").filter(pk__gt=after)
                old_rows = list(page.select_for_update(of=("self",)).values_list("pk", *attnames)[:_BATCH])
                if not old_rows:
                    return updated
                pks = [row[0] for row in old_rows]
                updated += base.filter(pk__in=pks).update(**kwargs)
                new_rows = dict(
                    (row[0], row[1:]) for row in base.filter(pk__in=pks).values_list("pk", *attnames)
                )
                for pk, *old in old_rows:
                    for field, old_value, new_value in zip(fields, old, new_rows[pk], strict=True):
                        _notify(
                            spec,
                            pk,
                            field,
                            field_json(field, old_value),
                            _new_json(field, new_value),
                            "updated",
                        )
                after = pks[-1]

    def bulk_update(self, objs: Iterable[Any], fields: Iterable[str], batch_size: int | None = None) -> int:
        fields = list(fields)
        observed = self._spec_fields(fields)
        objs = list(objs)
        if not observed:
            return super().bulk_update(objs, fields, batch_size=batch_size)
        spec, base = _observed[self.model], self.model._base_manager.using(self.db)
        attnames = [f.attname for f in observed]
        with transaction.atomic(using=self.db):
            old: dict[Any, tuple[Any, ...]] = {}
            for start in range(0, len(objs), _BATCH):
                pks = [obj.pk for obj in objs[start : start + _BATCH]]
                rows = base.filter(pk__in=pks).select_for_update().values_list("pk", *attnames)
                old.update((row[0], row[1:]) for row in rows)
            # The base manager's plain queryset: Django's bulk_update calls update(), which here
            # would notify a second time.
            updated = base.bulk_update(objs, fields, batch_size=batch_size)
            for obj in objs:
                loaded = obj.__dict__.setdefault(_LOADED, {})
                for field, old_value in zip(observed, old.get(obj.pk, (None,) * len(observed)), strict=True):
                    new_value = _new_json(field, getattr(obj, field.attname))
                    _notify(spec, obj.pk, field, field_json(field, old_value), new_value, "updated")
                    loaded[field.attname] = None if isinstance(new_value, _Refused) else new_value
        return updated

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> Any:
        spec = _observed.get(self.model)
        if spec is None:
            return super().bulk_create(objs, *args, **kwargs)
        if kwargs.get("update_conflicts"):
            raise ValueError(
                f"bulk_create(update_conflicts=True) on observed {spec.label} cannot tell old values; "
                "use update() or bulk_update() for rows that exist"
            )
        with transaction.atomic(using=self.db):
            created = super().bulk_create(objs, *args, **kwargs)
            for obj in created:
                if obj.pk is None:  # ignore_conflicts: the database does not say which rows went in
                    continue
                obj.__dict__[_LOADED] = loaded = {}
                for field in spec.fields:
                    new = _new_json(field, getattr(obj, field.attname))
                    _notify(spec, obj.pk, field, None, new, "created")
                    loaded[field.attname] = None if isinstance(new, _Refused) else new
        return created

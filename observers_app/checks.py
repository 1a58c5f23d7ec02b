"""System checks with stable ids: observers.E001 and up."""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.core.checks import Warning as CheckWarning
from django.core.checks import register as register_check

from . import conf


def check_celery_serialization(**kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    if getattr(settings, "CELERY_TASK_SERIALIZER", "json") != "json":
        errors.append(
            Error(
                "CELERY_TASK_SERIALIZER must be 'json'.", hint="The hub sends JSON only.", id="observers.E001"
            )
        )
    if set(getattr(settings, "CELERY_ACCEPT_CONTENT", ["json"])) != {"json"}:
        errors.append(
            Error(
                "CELERY_ACCEPT_CONTENT must be ['json'].",
                hint="Accepting pickle lets anyone who can publish run code in the worker.",
                id="observers.E002",
            )
        )
    return errors


def check_settings(**kwargs: Any) -> list[CheckMessage]:
    limits = {name: float(getattr(settings, name, default)) for name, default in conf.DEFAULTS.items()}
    return [
        Error(f"{name} must be positive, not {value}.", id="observers.E003")
        for name, value in limits.items()
        if value <= 0
    ]


def check_observed_managers(**kwargs: Any) -> list[CheckMessage]:
    from .signals import ObservedQuerySet, observed_models

    return [
        CheckWarning(
            f"{model._meta.label} is observed but its default manager is not an ObservedQuerySet: "
            "update(), bulk_update() and bulk_create() on it will not notify.",
            hint="objects = ObservedQuerySet.as_manager()",
            obj=model,
            id="observers.W001",
        )
        for model in observed_models()
        if not isinstance(model._default_manager.all(), ObservedQuerySet)
    ]


def register() -> None:
    register_check(check_celery_serialization)
    register_check(check_settings)
    register_check(check_observed_managers)

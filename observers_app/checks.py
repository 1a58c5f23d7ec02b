"""System checks with stable ids: observers.E001 and up."""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error
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
    limits = {
        "OBSERVERS_BATCH_SIZE": conf.batch_size(),
        "OBSERVERS_CALLBACK_TIME_LIMIT": conf.callback_time_limit(),
        "OBSERVERS_MAX_PAYLOAD_BYTES": conf.max_payload_bytes(),
    }
    return [
        Error(f"{name} must be positive, not {value}.", id="observers.E003")
        for name, value in limits.items()
        if value <= 0
    ]


def register() -> None:
    register_check(check_celery_serialization)
    register_check(check_settings)

"""System checks with stable ids: where the host's configuration would defeat the hub."""

import ipaddress
from typing import Any

from celery import Celery, current_app
from celery.app import routes as celery_routes
from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.core.checks import Warning as CheckWarning
from django.core.checks import register as register_check
from django.db.models import deletion

from . import conf, wiring

# Django 6.1's database-level on_delete (none before it).
_DATABASE_ON_DELETE: tuple[type, ...] = tuple(filter(None, [getattr(deletion, "DatabaseOnDelete", None)]))


def _celery_app() -> Celery:
    return current_app._get_current_object()  # type: ignore[attr-defined]


def check_celery_serialization(**kwargs: Any) -> list[CheckMessage]:
    celery_conf = _celery_app().conf
    errors: list[CheckMessage] = []
    if celery_conf.task_serializer != "json":
        errors.append(
            Error(
                "CELERY_TASK_SERIALIZER must be 'json'.", hint="The hub sends JSON only.", id="observers.E001"
            )
        )
    if set(celery_conf.accept_content) != {"json"}:
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
        name: float(getattr(settings, name, default))
        for name, default in conf.DEFAULTS.items()
        if isinstance(default, int | float) and not isinstance(default, bool)
    }
    return [
        Error(f"{name} must be positive, not {value}.", id="observers.E003")
        for name, value in limits.items()
        if value <= 0
    ]


def check_renamed_settings(**kwargs: Any) -> list[CheckMessage]:
    return [
        CheckWarning(
            f"{old} is renamed {new}; the old name is read until version 0.4 when the new one is not set.",
            hint=f"Rename {old} to {new} in your settings.",
            id="observers.W005",
        )
        for old, new in conf.RENAMED.items()
        if hasattr(settings, old)
    ]


def check_celery_wiring(**kwargs: Any) -> list[CheckMessage]:
    """The host's Celery configuration against the hub's own queues and tasks."""
    app = _celery_app()
    if not getattr(app, "set_as_current", True):  # Celery's fallback app: the host made none current
        return [
            CheckWarning(
                "No Celery app is configured: no worker would deliver notifications and beat could not "
                "run the hub's sweep.",
                hint="Create one as in Celery's 'First steps with Django' (mysite/celery.py, imported "
                "from mysite/__init__.py).",
                id="observers.W003",
            )
        ]
    messages: list[CheckMessage] = []
    hub_queues = {queue.name for queue in (*wiring.consumed_queues(), wiring.shed_queue())}
    if app.conf.task_default_queue in hub_queues:
        messages.append(
            Error(
                f"CELERY_TASK_DEFAULT_QUEUE is {app.conf.task_default_queue!r}, one of the hub's queues: "
                "every task of the project would go to it (the dispatch queue is bounded and sheds).",
                hint="Leave CELERY_TASK_DEFAULT_QUEUE to the project ('celery' by default), or rename the "
                "hub's queues with OBSERVERS_QUEUE.",
                id="observers.E004",
            )
        )
    declared = {getattr(queue, "name", queue) for queue in app.conf.task_queues or ()}
    if clash := sorted(declared & hub_queues):
        messages.append(
            Error(
                f"CELERY_TASK_QUEUES declares {clash}, the hub's own queue names.",
                hint="The hub declares its own queues: remove these, or rename its with OBSERVERS_QUEUE.",
                id="observers.E005",
            )
        )
    if app.conf.task_always_eager:
        messages.append(
            CheckWarning(
                "CELERY_TASK_ALWAYS_EAGER is on: callbacks would run inside the caller, before commit, "
                "hiding serialization and transaction bugs.",
                hint="Run a real worker, in tests too.",
                id="observers.W002",
            )
        )
    host_routes = [route for route in wiring.routes_of(app) if route is not wiring.route_hub_task]
    router = celery_routes.Router(celery_routes.prepare(host_routes), app=app)
    if routed := sorted(name for name in wiring.TASKS if router.lookup_route(name)):
        messages.append(
            CheckWarning(
                f"CELERY_TASK_ROUTES routes the hub's tasks {routed}: the hub's own router comes first and "
                "sends them to its queues, so these routes are ignored.",
                hint="Remove them; a dedicated hub worker consumes the hub's queues with "
                f"-Q {','.join(queue.name for queue in wiring.consumed_queues())}.",
                id="observers.W004",
            )
        )
    return messages


def check_webhook_settings(**kwargs: Any) -> list[CheckMessage]:
    from .webhooks import guard

    errors: list[CheckMessage] = []
    try:
        guard.parse_allowlist(conf.webhook_allow())
    except (ValueError, TypeError) as exc:
        errors.append(Error(str(exc), id="observers.E006"))
    try:
        schedule = conf.webhook_retry_schedule()
    except (ValueError, TypeError):
        schedule = [-1.0]
    if any(delay < 0 for delay in schedule):
        errors.append(
            Error("OBSERVERS_WEBHOOK_RETRY_SCHEDULE must list seconds, each >= 0.", id="observers.E007")
        )
    positive = {
        "OBSERVERS_WEBHOOK_CONNECT_TIMEOUT": conf.webhook_connect_timeout(),
        "OBSERVERS_WEBHOOK_TIMEOUT": conf.webhook_timeout(),
        "OBSERVERS_WEBHOOK_DISABLE_AFTER": conf.webhook_disable_after(),
        "OBSERVERS_WEBHOOK_DISABLE_AFTER_FAILURES": conf.webhook_disable_after_failures(),
        "OBSERVERS_WEBHOOK_ATTEMPTS_KEPT": conf.webhook_attempts_kept(),
        "OBSERVERS_WEBHOOK_MAX_COUNTDOWN": conf.webhook_max_countdown(),
    }
    errors += [
        Error(f"{name} must be positive, not {value}.", id="observers.E008")
        for name, value in positive.items()
        if value <= 0
    ]
    for host, addresses in conf.webhook_resolve().items():
        try:
            [ipaddress.ip_address(address) for address in addresses]
        except ValueError:
            errors.append(
                Error(f"OBSERVERS_WEBHOOK_RESOLVE[{host!r}] must list IP addresses.", id="observers.E009")
            )
    return errors


def check_stream_authorizer(**kwargs: Any) -> list[CheckMessage]:
    from .streams import access

    if conf.stream_authorizer() == "observers.staff_only":
        return [
            CheckWarning(
                "OBSERVERS_STREAM_AUTHORIZER='observers.staff_only' lets any staff user watch every "
                "variable, every session's values included; it is removed in 0.4.",
                hint="Remove the setting (the default, observers.watch_permission, requires the "
                "observers_app.watch_variable permission) and grant that permission to who may watch.",
                id="observers.W007",
            )
        ]
    if conf.stream_authorizer() in access.registered_authorizers():
        return []
    return [
        Error(
            f"OBSERVERS_STREAM_AUTHORIZER={conf.stream_authorizer()!r} names no registered authorizer.",
            hint="Decorate a function (user, var_ids) -> bool with @stream_authorizer(name=...) from "
            "observers_app.streams.access, in a module your app's ready() imports.",
            id="observers.E010",
        )
    ]


def check_stream_origins(**kwargs: Any) -> list[CheckMessage]:
    from .streams import access

    name = "OBSERVERS_STREAM_ALLOWED_ORIGINS"
    origins = getattr(settings, name, conf.DEFAULTS[name])
    if not isinstance(origins, list | tuple):
        return [
            Error(
                f"{name} is a {type(origins).__name__}, not a list of origins.",
                hint="e.g. ['https://app.example.com']",
                id="observers.E011",
            )
        ]
    return [
        Error(
            f"{name} lists {origin!r}, which is not an origin as browsers send it.",
            hint="An origin is scheme://host[:port] in lower case, with a punycode host, without a "
            "default port, a path or a trailing slash, e.g. 'https://app.example.com'.",
            id="observers.E011",
        )
        for origin in origins
        if not access.is_origin(origin)
    ]


def check_observed_managers(**kwargs: Any) -> list[CheckMessage]:
    from .sources.model_fields import ObservedQuerySet, observed_models

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


def check_database_on_delete(**kwargs: Any) -> list[CheckMessage]:
    """Django 6.1's database-level on_delete (DB_CASCADE, DB_SET_NULL, DB_SET_DEFAULT) deletes or
    changes rows in the database alone: no post_delete or post_save reaches model-field observing."""
    from .sources.model_fields import observed_models

    messages: list[CheckMessage] = []
    for model in observed_models():
        for field in model._meta.get_fields():
            on_delete = getattr(field.remote_field, "on_delete", None) if field.concrete else None
            if isinstance(on_delete, _DATABASE_ON_DELETE):
                messages.append(
                    CheckWarning(
                        f"{model._meta.label} is observed, but {model._meta.label}.{field.name} has "
                        f"on_delete={on_delete}: the database deletes or changes those rows without "
                        "Django's signals, so their observers miss it.",
                        hint="Use a Python-level on_delete (CASCADE, SET_NULL, SET_DEFAULT) on observed "
                        "models, or call notify_observers() yourself after such deletes.",
                        obj=model,
                        id="observers.W006",
                    )
                )
    return messages


def register() -> None:
    register_check(check_celery_serialization)
    register_check(check_settings)
    register_check(check_renamed_settings)
    register_check(check_celery_wiring)
    register_check(check_observed_managers)
    register_check(check_database_on_delete)
    register_check(check_webhook_settings)
    register_check(check_stream_authorizer)
    register_check(check_stream_origins)

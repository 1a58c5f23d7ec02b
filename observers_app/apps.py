"""App configuration: connects the hub's hooks and installs its Celery wiring on the host's app."""

from importlib.util import find_spec

from django.apps import AppConfig


class ObserversConfig(AppConfig):
    name = "observers_app"
    verbose_name = "Observers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from celery import current_app

        from . import checks, registry, wiring
        from .owners import process
        from .publishing import broker, buffer, outbox, presence
        from .streams import forwarding  # noqa: F401 (registers the hub's stream callback)
        from .telemetry import counters
        from .upkeep import ticker
        from .webhooks import callback  # noqa: F401 (registers the hub's webhook callback)
        from .worker import retrying

        checks.register()
        process.connect()
        broker.connect()
        buffer.connect()
        outbox.connect()
        presence.connect()
        counters.connect()
        ticker.connect()
        retrying.connect()
        if find_spec("prometheus_client"):  # the [prometheus] extra
            from .telemetry import metrics

            metrics.connect()
        registry.autodiscover()
        # The host's Celery app: its package imports it (Celery's Django layout) before Django is set up.
        wiring.install(current_app._get_current_object())  # type: ignore[attr-defined]

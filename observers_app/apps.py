"""App configuration: connects the hub's hooks and installs its Celery wiring on the host's app."""

from importlib.util import find_spec

from django.apps import AppConfig


class ObserversConfig(AppConfig):
    name = "observers_app"
    verbose_name = "Observers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from celery import current_app

        from . import checks, liveness, outbox, publisher, registry, sender, wiring
        from .streams import forwarding  # noqa: F401 - registers the streams' forwarding callback

        checks.register()
        liveness.connect()
        publisher.connect()
        sender.connect()
        outbox.connect()
        if find_spec("prometheus_client"):  # the [prometheus] extra
            from . import metrics

            metrics.connect()
        registry.autodiscover()
        # The host's Celery app: its package imports it (Celery's Django layout) before Django is set up.
        wiring.install(current_app._get_current_object())  # type: ignore[attr-defined]

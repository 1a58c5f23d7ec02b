"""App configuration: wires checks and discovers callback modules."""

from django.apps import AppConfig


class ObserversConfig(AppConfig):
    name = "observers_app"
    verbose_name = "Observers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, metrics, registry

        checks.register()
        metrics.connect()
        registry.autodiscover()

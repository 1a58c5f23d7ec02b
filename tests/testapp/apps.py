"""A test app: callbacks that record every call in the database the tests read, and an observed model."""

from django.apps import AppConfig


class TestAppConfig(AppConfig):
    name = "tests.testapp"
    label = "testapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from observers_app import signals
        from observers_app.sources.model_fields import observe_model

        from .callbacks import refuse_poison
        from .models import Order

        observe_model(Order, fields=["status", "total"])
        signals.notification_dispatched.connect(refuse_poison, dispatch_uid="tests-refuse-poison")

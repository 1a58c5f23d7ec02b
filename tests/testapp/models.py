"""What the test callbacks received, one row per call."""

from django.db import models

from observers_app.sources.model_fields import ObservedQuerySet


class Received(models.Model):
    observer_ref = models.UUIDField()
    var_id = models.CharField(max_length=255)
    old_value = models.JSONField(null=True)
    new_value = models.JSONField(null=True)
    metadata = models.JSONField()
    pid = models.IntegerField(help_text="The worker process that ran the callback.")
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.var_id} -> {self.observer_ref}"


class Order(models.Model):
    """An observed model: status and total notify, note does not (see apps.py)."""

    status = models.CharField(max_length=20, default="new")
    total = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    note = models.TextField(blank=True)

    objects = ObservedQuerySet.as_manager()

    def __str__(self) -> str:
        return f"order {self.pk} {self.status}"

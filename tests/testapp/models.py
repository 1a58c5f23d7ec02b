"""What the test callbacks received, one row per call."""

from django.db import models


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

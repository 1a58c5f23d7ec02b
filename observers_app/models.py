"""Tables: observers, per-variable notification state, and the hub's global counters."""

import uuid

from django.db import models
from django.utils import timezone

from .querysets import ObserverQuerySet

VAR_ID_MAX_LENGTH = 255


class Observer(models.Model):
    """One callback registered on one variable; its primary key is the ref add_observer returns."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    var_id = models.CharField(max_length=VAR_ID_MAX_LENGTH)
    callback = models.CharField(max_length=255, help_text="Registered callback name.")
    created_at = models.DateTimeField(default=timezone.now)
    failures = models.PositiveIntegerField(default=0, help_text="Failed calls in a row.")
    last_error = models.TextField(blank=True)
    last_failed_at = models.DateTimeField(null=True, blank=True)

    objects = ObserverQuerySet.as_manager()

    class Meta:
        indexes = [
            # Serves the existence check, counts and the keyset pages of a fan-out.
            models.Index(fields=["var_id", "id"], name="observer_var_id_id"),
        ]

    def __str__(self) -> str:
        return f"{self.callback} on {self.var_id}"


class VariableState(models.Model):
    """The notification sequence of one variable, advanced once per fanned-out notification."""

    var_id = models.CharField(max_length=VAR_ID_MAX_LENGTH, primary_key=True)
    seq = models.BigIntegerField(default=0)
    last_notified_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.var_id} @ {self.seq}"


class StatCounter(models.Model):
    """A global counter, shared by every process and kept across restarts."""

    name = models.CharField(max_length=64, primary_key=True)
    value = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} = {self.value}"

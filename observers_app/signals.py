"""The hub's own Django signals, sent to watch it without touching it (telemetry, metrics, logs).

Every signal is sent with ``sender=None`` and these keyword arguments:

- ``observer_added``: ``ref``, ``var_id``, ``callback``, ``owner`` (an owner id or None), after commit.
- ``observer_removed``: ``ref``, ``var_id``, ``callback``, ``owner``, ``reason`` (``removed``,
  ``owner_closed``, ``owner_died``, ``swept``, ``quarantined``), after commit.
- ``notification_published``: ``var_id``, ``published`` (False when no observer was found),
  ``duration_s`` (the caller's existence check and hand-off to the outbox), in the notifying process.
- ``notification_dispatched``: ``var_id``, ``notification_id``, ``seq``, ``fanout`` (observers reached),
  in the worker, once the fan-out is sent.
- ``callbacks_delivered``: ``var_id``, ``ok``, ``failed``, ``latency_s`` (from notify to the end of
  the page's callbacks), in the worker, per page of observers.
- ``callback_failed``: ``ref``, ``var_id``, ``callback``, ``error``, in the worker.
- ``observers_swept``: ``removed`` (observers), ``owners`` (owners deleted), after each sweep.
"""

from django.dispatch import Signal

from .deprecation import moved

observer_added = Signal()
observer_removed = Signal()
notification_published = Signal()
notification_dispatched = Signal()
callbacks_delivered = Signal()
callback_failed = Signal()
observers_swept = Signal()

# Before 0.3 this module held model-field observing (now sources.model_fields).
__getattr__ = moved(
    __name__,
    {
        name: f"observers_app.sources.model_fields:{name}"
        for name in ("observe_model", "ObservedQuerySet", "model_variable_id", "observed_models")
    },
)

"""The hub's own Django signals, sent to watch it without touching it (telemetry, metrics, logs).

Every signal is sent with ``sender=None``, after commit where it tells of a write.
"""

from django.dispatch import Signal

from .deprecation import moved

# ref, var_id, callback, owner (an owner id or None).
observer_added = Signal()
# ref, var_id, callback, owner, reason (removed, owner_closed, owner_died, swept, quarantined).
observer_removed = Signal()
# var_id, published (False when no observer was found), duration_s (the caller's existence check and
# hand-off to its send buffer): in the notifying process.
notification_published = Signal()
# var_id, notification_id, seq, fanout (observers reached: exact when they fit in one page, else
# estimated past it from the spread of the first page's ids): in the worker, once the fan-out is sent.
notification_dispatched = Signal()
# var_id, ok, failed, latency_s (from notify to the end of the page's callbacks): per page of observers
# (per chunk of a page read in several).
callbacks_delivered = Signal()
# ref, var_id, callback, error: in the worker.
callback_failed = Signal()
# removed (observers), owners (owners deleted): after each sweep.
observers_swept = Signal()
# owner (its id): this process's owner was swept while the process was cut off from the database;
# what it owned is gone, and process_owner() opens a new one. In the process, from a thread of the hub.
process_owner_lost = Signal()

# Before 0.3 this module held model-field observing (now sources.model_fields).
__getattr__ = moved(
    __name__,
    {
        name: f"observers_app.sources.model_fields:{name}"
        for name in ("observe_model", "ObservedQuerySet", "model_variable_id", "observed_models")
    },
)

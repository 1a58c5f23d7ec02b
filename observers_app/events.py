"""Deprecated: the hub's Django signals moved to ``observers_app.signals``."""

from .deprecation import moved

__getattr__ = moved(
    __name__,
    {
        "observer_added": "observers_app.signals:observer_added",
        "observer_removed": "observers_app.signals:observer_removed",
        "notification_published": "observers_app.signals:notification_published",
        "notification_dispatched": "observers_app.signals:notification_dispatched",
        "callbacks_delivered": "observers_app.signals:callbacks_delivered",
        "callback_failed": "observers_app.signals:callback_failed",
        "observers_swept": "observers_app.signals:observers_swept",
    },
)

"""Deprecated: the hub's queues moved to ``observers_app.publishing.backpressure``."""

from .deprecation import moved

__getattr__ = moved(
    __name__,
    {
        "declare_queues": "observers_app.publishing.backpressure:declare_queues",
        "delete_queues": "observers_app.publishing.backpressure:delete_queues",
        "drain_shed": "observers_app.publishing.backpressure:drain_shed",
    },
)

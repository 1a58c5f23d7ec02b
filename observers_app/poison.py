"""Deprecated: dead letters moved to ``observers_app.worker.poison`` (``manager.replay_dead_letters``)."""

from .deprecation import moved

__getattr__ = moved(
    __name__,
    {
        "replay": "observers_app.worker.poison:replay_dead_letters",
    },
)

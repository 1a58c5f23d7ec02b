"""Deprecated: ``flush`` moved to ``observers_app.publishing.buffer`` (``manager.flush``)."""

from .deprecation import moved

__getattr__ = moved(
    __name__,
    {
        "flush": "observers_app.publishing.buffer:flush",
    },
)

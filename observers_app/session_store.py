"""Deprecated: the session store moved to ``observers_app.sources.sessions`` (and ``manager``)."""

from .deprecation import moved

__getattr__ = moved(
    __name__,
    {
        "set_variable": "observers_app.sources.sessions:set_variable",
        "get_variable": "observers_app.sources.sessions:get_variable",
        "delete_variable": "observers_app.sources.sessions:delete_variable",
        "variable_id": "observers_app.sources.sessions:variable_id",
    },
)

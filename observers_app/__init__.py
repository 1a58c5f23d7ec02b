"""observers: a Django + Celery notification hub that fans variable changes out to observers.

The public API is ``observers_app.manager``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("django-observers-hub")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

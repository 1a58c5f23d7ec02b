"""The hub's HTTP views."""

from importlib.util import find_spec

from django.http import Http404, HttpRequest, HttpResponse


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics of every hub process (the ``[prometheus]`` extra)."""
    if not find_spec("prometheus_client"):
        raise Http404(
            "Prometheus metrics need the [prometheus] extra: pip install django-observers-hub[prometheus]"
        )
    from .metrics import metrics_view

    return metrics_view(request)

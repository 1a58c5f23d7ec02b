"""The hub's HTTP views."""

import hmac
from importlib.util import find_spec

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse

from . import conf


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics of every hub process (the ``[prometheus]`` extra), for the scrapers allowed
    by OBSERVERS_METRICS_TOKEN and OBSERVERS_METRICS_ALLOWED_IPS: they show the hub's rates and health."""
    if not _may_scrape(request):
        raise PermissionDenied("set OBSERVERS_METRICS_TOKEN and send it as 'Authorization: Bearer <token>'")
    if not find_spec("prometheus_client"):
        raise Http404(
            "Prometheus metrics need the [prometheus] extra: pip install django-observers-hub[prometheus]"
        )
    from .telemetry.metrics import metrics_view

    return metrics_view(request)


def _may_scrape(request: HttpRequest) -> bool:
    token = conf.metrics_token()
    if token:
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if hmac.compare_digest(sent.encode(), token.encode()):
            return True
    # REMOTE_ADDR, never X-Forwarded-For: a client chooses that header.
    return request.META.get("REMOTE_ADDR") in conf.metrics_allowed_ips()

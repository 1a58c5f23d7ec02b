"""The hub's URLs, for a host to include (the example project mounts them at ``/observers/``)."""

from django.urls import path

from . import views
from .streams.views import stream_view

app_name = "observers"

urlpatterns = [
    path("metrics", views.metrics, name="metrics"),
    path("stream", stream_view, name="stream"),
]

"""The tests' URLconf: the example project's URLs, plus the test app's async views."""

from django.urls import path

from project.urls import urlpatterns as project_urlpatterns
from tests.testapp import views

urlpatterns = [
    *project_urlpatterns,
    path("tests/async/observe", views.observe),
    path("tests/async/notify", views.notify),
    path("tests/async/ping", views.ping),
]

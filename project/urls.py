"""URL configuration."""

from django.contrib import admin
from django.urls import path

from observers_app.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", metrics_view, name="metrics"),
]

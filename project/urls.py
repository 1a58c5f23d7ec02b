"""URL configuration of the example project: the admin, and the hub's URLs under /observers/."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("observers/", include("observers_app.urls")),
]

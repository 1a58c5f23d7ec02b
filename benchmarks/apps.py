"""App configuration of the development-only benchmarks app, so its management commands are found."""

from django.apps import AppConfig


class BenchmarksConfig(AppConfig):
    name = "benchmarks"
    verbose_name = "Observers benchmarks"

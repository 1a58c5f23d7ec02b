"""Prometheus metrics: series recorded from the hub's signals, the figures of get_stats, the view.

Multi-process safe: with ``PROMETHEUS_MULTIPROC_DIR`` set (to an empty directory shared by the web
and worker processes, before they start) every process writes its samples there and ``/metrics``
merges them; without it, ``/metrics`` shows the serving process only.
"""

import glob
import os
from collections.abc import Iterable
from typing import Any

from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .. import signals
from . import catalog, stats

NOTIFY_SECONDS = Histogram(
    "observers_notify_seconds",
    catalog.METRICS["observers_notify_seconds"],
    ["published"],
    buckets=(25e-6, 50e-6, 100e-6, 200e-6, 300e-6, 500e-6, 1e-3, 2e-3, 5e-3, 0.02, 0.1),
)
FANOUT_WIDTH = Histogram(
    "observers_fanout_width",
    catalog.METRICS["observers_fanout_width"],
    buckets=(1, 10, 100, 1_000, 10_000, 100_000),
)
NOTIFY_TO_CALLBACK_SECONDS = Histogram(
    "observers_notify_to_callback_seconds",
    catalog.METRICS["observers_notify_to_callback_seconds"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CALLBACKS = Counter("observers_callbacks", catalog.METRICS["observers_callbacks"], ["outcome"])
SWEEPS = Counter("observers_sweeps", catalog.METRICS["observers_sweeps"])
REMOVALS = Counter("observers_removals", catalog.METRICS["observers_removals"], ["reason"])
ADDED = Counter("observers_added", catalog.METRICS["observers_added"])


def _on_published(*, published: bool, duration_s: float, **kwargs: Any) -> None:
    NOTIFY_SECONDS.labels(published=str(published).lower()).observe(duration_s)


def _on_dispatched(*, fanout: int, **kwargs: Any) -> None:
    FANOUT_WIDTH.observe(fanout)


def _on_delivered(*, ok: int, failed: int, latency_s: float, **kwargs: Any) -> None:
    NOTIFY_TO_CALLBACK_SECONDS.observe(latency_s)
    CALLBACKS.labels(outcome="ok").inc(ok)
    CALLBACKS.labels(outcome="failed").inc(failed)


def _on_removed(*, reason: str, **kwargs: Any) -> None:
    REMOVALS.labels(reason=reason).inc()


def _on_added(**kwargs: Any) -> None:
    ADDED.inc()


def _on_swept(**kwargs: Any) -> None:
    SWEEPS.inc()


def connect() -> None:
    signals.notification_published.connect(_on_published, dispatch_uid="observers.metrics")
    signals.notification_dispatched.connect(_on_dispatched, dispatch_uid="observers.metrics")
    signals.callbacks_delivered.connect(_on_delivered, dispatch_uid="observers.metrics")
    signals.observer_removed.connect(_on_removed, dispatch_uid="observers.metrics")
    signals.observer_added.connect(_on_added, dispatch_uid="observers.metrics")
    signals.observers_swept.connect(_on_swept, dispatch_uid="observers.metrics")
    REGISTRY.register(_FIGURES)


class _Collector(multiprocess.MultiProcessCollector):
    """prometheus_client's merge of the processes' files, skipping a file still being created."""

    def __init__(self, registry: CollectorRegistry, path: str) -> None:
        self.path = path
        super().__init__(registry, path)

    def collect(self) -> Iterable[Metric]:
        return self.merge([path for path in glob.glob(os.path.join(self.path, "*.db")) if _started(path)])


def _started(path: str) -> bool:
    """A process creates its file empty, then sizes it: reading it in between fails."""
    try:
        return os.path.getsize(path) > 0
    except FileNotFoundError:
        return False


class _Figures(Collector):
    """The hub's figures (get_stats, shared by every process and host) as ``observers_stats_<name>``,
    read once per scrape: counters as counters, live figures as gauges, HELP from the catalog."""

    def describe(self) -> Iterable[Metric]:
        """The series' names and help, without reading them (the registry asks at registration)."""
        yield from (GaugeMetricFamily(f"observers_stats_{name}", f.help) for name, f in catalog.LIVE.items())
        yield from (
            CounterMetricFamily(f"observers_stats_{name}", f.help) for name, f in catalog.COUNTERS.items()
        )

    def collect(self) -> Iterable[Metric]:
        figures = stats.get_stats()
        for name, figure in catalog.LIVE.items():
            yield GaugeMetricFamily(f"observers_stats_{name}", figure.help, value=figures[name])
        for name, figure in catalog.COUNTERS.items():
            yield CounterMetricFamily(f"observers_stats_{name}", figure.help, value=figures[name])


_FIGURES = _Figures()


def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus exposition of every process's samples (see the module docstring) and of the
    hub's figures."""
    registry = REGISTRY
    if path := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _Collector(registry, path)
        registry.register(_FIGURES)
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

"""The stats dashboard's figures: labelled from the catalog, the per-minute chart, one reading of both.

What the admin page renders, and what its live stream sends each time the figures change.
"""

from datetime import timedelta
from typing import Any

from django.utils import timezone

from ..models import StatBucket
from . import catalog, counters, stats

# The variable a stream watches to receive the dashboard's readings (no observer: each web process
# reads the figures once a second while one of its streams watches it).
VARIABLE = "observers:stats"


def labelled(stats: dict[str, int]) -> list[dict[str, Any]]:
    """The figures in display order, each with its label and help text from the catalog."""
    order = [*catalog.FIGURES, *sorted(set(stats) - set(catalog.FIGURES))]
    unknown = catalog.Figure("", "")
    return [
        {
            "name": name,
            "label": catalog.FIGURES.get(name, unknown).label or name,
            "help": catalog.FIGURES.get(name, unknown).help,
            "value": stats[name],
        }
        for name in order
        if name in stats
    ]


def reading() -> dict[str, Any]:
    """What the dashboard shows now: the figures and the chart."""
    return {"stats": stats.get_stats(), "chart": stats_chart()}


# The charted counters and their series' labels; the page's stylesheet (static/observers_app/stats.css)
# colours each series by its label (class "observers-series-<label>").
CHART_SERIES = {
    "notifications_dispatched": "notifications",
    "notifications_sent": "callbacks",
    "notifications_failed": "failures",
}


def stats_chart(*, minutes: int = 60, width: int = 720, height: int = 200) -> dict[str, Any]:
    """Per-minute counts of the last hour as SVG polylines, drawn server-side (no CDN, no chart library)."""
    now = timezone.now().replace(second=0, microsecond=0)
    start = now - timedelta(minutes=minutes - 1)
    values = {name: [0] * minutes for name in CHART_SERIES}
    for minute, name, value in StatBucket.objects.filter(
        minute__gte=start, name__in=list(CHART_SERIES)
    ).values_list("minute", "name", "value"):
        values[name][int((minute - start).total_seconds() // 60)] = value
    peak = max(max(series) for series in values.values()) or 1
    step = width / (minutes - 1)
    return {
        "width": width,
        "height": height,
        "peak": peak,
        "series": [
            {
                "label": label,
                "total": sum(values[name]),
                "points": " ".join(
                    f"{i * step:.1f},{height - value * height / peak:.1f}"
                    for i, value in enumerate(values[name])
                ),
            }
            for name, label in CHART_SERIES.items()
        ],
        "bucketed": counters.BUCKETED,
    }

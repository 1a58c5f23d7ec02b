"""Print the hub's global stats as a table."""

from typing import Any

from django.core.management.base import BaseCommand

from ... import manager


class Command(BaseCommand):
    help = "Print every get_stats() figure: counters shared by all processes, live counts, uptime."

    def handle(self, *args: Any, **options: Any) -> None:
        stats = manager.get_stats()
        width = max(map(len, stats))
        self.stdout.write(f"{'figure':<{width}}  {'value':>14}")
        self.stdout.write(f"{'-' * width}  {'-' * 14}")
        for name, value in stats.items():
            self.stdout.write(f"{name:<{width}}  {value:>14,}")

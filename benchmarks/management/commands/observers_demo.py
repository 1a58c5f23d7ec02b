"""Run the hub end to end: migrate, start a worker, notify observers, show callbacks and stats."""

from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand

from benchmarks import demo


class Command(BaseCommand):
    help = "Migrate, start a real Celery worker, fan notifications out to observers and print the stats."

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", verbosity=0)
        stats = demo.run(workdir=Path(".demo"), say=self.stdout.write)
        self.stdout.write("\nhub stats")
        for name, value in stats.items():
            self.stdout.write(f"  {name:<24}{value:>12}")

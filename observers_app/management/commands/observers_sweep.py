"""Run the sweep of dead owners and their observers now, and print what it removed."""

from typing import Any

from django.core.management.base import BaseCommand

from ... import manager


class Command(BaseCommand):
    help = "Run the sweep now: dead owners and their observers, shed notifications, old records; print it."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--batch-size", type=int, default=None, help="rows per transaction")

    def handle(self, *args: Any, **options: Any) -> None:
        removed = manager.sweep(batch_size=options["batch_size"])
        for name, count in removed.items():
            self.stdout.write(f"{name:<24}{count:>10}")

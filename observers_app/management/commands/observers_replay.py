"""Replay dead letters: publish parked messages again once their cause is fixed."""

from typing import Any

from django.core.management.base import BaseCommand

from ...worker import poison


class Command(BaseCommand):
    help = (
        "Publish dead letters again (the given ids, or the oldest --limit) and delete them; print how many."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("ids", nargs="*", type=int, help="dead letter ids (default: the oldest)")
        parser.add_argument("--limit", type=int, default=1000, help="at most this many")

    def handle(self, *args: Any, **options: Any) -> None:
        replayed = poison.replay_dead_letters(options["ids"] or None, limit=options["limit"])
        self.stdout.write(f"replayed {replayed}")

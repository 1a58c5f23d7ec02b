"""Replay dead letters: publish parked messages again once their cause is fixed (a variable's history is
replayed to an observer by observers_replay_history)."""

from typing import Any

from django.core.management.base import BaseCommand

from ...worker import poison


class Command(BaseCommand):
    help = (
        "Publish dead letters again (the given ids, or the oldest --limit) and delete them; print how many. "
        "(observers_replay_history is another command: it replays a variable's history to an observer.)"
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("ids", nargs="*", type=int, help="dead letter ids (default: the oldest)")
        parser.add_argument("--limit", type=int, default=1000, help="at most this many")

    def handle(self, *args: Any, **options: Any) -> None:
        replayed = poison.replay_dead_letters(options["ids"] or None, limit=options["limit"])
        self.stdout.write(f"replayed {replayed}")

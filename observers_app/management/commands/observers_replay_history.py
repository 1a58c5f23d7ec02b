"""Replay a variable's kept history to one observer (a callback or a webhook endpoint); distinct from
observers_replay, which publishes dead letters again."""

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from ...exceptions import InvalidObserverRef, ReplayRefused
from ...history.replay import replay


def _time(value: str) -> datetime:
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise CommandError(
            f"--since {value!r} is not an ISO 8601 time with its zone (e.g. 2026-01-31T09:30:00+00:00)"
        )
    return parsed


class Command(BaseCommand):
    help = (
        "Send the kept history of an observer's variable (a glob's variables) again to that observer "
        "alone, from a time or a seq to now, with the original notification ids; print how many were "
        "queued. (observers_replay is another command: it publishes dead letters again.)"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ref", help="the observer's ref (a webhook's ref is one)")
        point = parser.add_mutually_exclusive_group(required=True)
        point.add_argument(
            "--since", type=_time, help="an ISO 8601 time with its zone: the notifications at or after it"
        )
        point.add_argument(
            "--since-seq",
            type=int,
            help="a seq of the variable: that notification and the later ones (not for a glob)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        since = options["since"] if options["since"] is not None else options["since_seq"]
        try:
            replayed = replay(options["ref"], since=since)
        except (InvalidObserverRef, ReplayRefused) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"queued {replayed.notifications} notifications of {replayed.variables} variables "
            f"for observer {replayed.observer_ref}"
        )
        if not replayed.complete:
            self.stderr.write(
                "incomplete: the history kept does not reach back that far (older ones were pruned)"
            )

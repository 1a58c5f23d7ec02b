"""Print who observes a variable, and whether each observer is alive, quarantined or failing."""

from typing import Any

from django.core.management.base import BaseCommand

from ... import manager

COLUMNS = (
    "ref",
    "callback",
    "match",
    "owner_name",
    "alive",
    "quarantined",
    "age_ms",
    "failures",
    "last_notified_at",
)


class Command(BaseCommand):
    help = "Show inspect_variable(VAR) as a table."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("var_id")
        parser.add_argument("--limit", type=int, default=1000, help="observers shown at most")

    def handle(self, *args: Any, **options: Any) -> None:
        report = manager.inspect_variable(options["var_id"], limit=options["limit"])
        self.stdout.write(
            f"{report['var_id']}: {report['observer_count']} observers called, seq {report['seq']}"
        )
        rows = [
            [str(o[column] if o[column] is not None else "-") for column in COLUMNS]
            for o in report["observers"]
        ]
        widths = [max([len(column), *(len(row[i]) for row in rows)]) for i, column in enumerate(COLUMNS)]
        self.stdout.write("  ".join(column.ljust(w) for column, w in zip(COLUMNS, widths, strict=True)))
        for row in rows:
            self.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        for observer in report["observers"]:
            if observer["last_error"]:
                self.stdout.write(f"last error of {observer['ref']}: {observer['last_error']}")

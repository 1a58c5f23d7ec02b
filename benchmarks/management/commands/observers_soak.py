"""The leak check: 1,000 owners come and go (some killed with SIGKILL), then one sweep."""

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

from benchmarks import soak


class Command(BaseCommand):
    help = "Owners that come and go, some killed; prints the rows left after one sweep and worker memory."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--clients", type=int, default=50, help="client processes (20 owners each)")
        parser.add_argument("--parallel", type=int, default=4, help="clients at once")
        parser.add_argument("--client", type=int, default=None, help="internal: run as client N")
        parser.add_argument("--json", type=Path, default=Path(".bench/observers_soak.json"))

    def handle(self, *args: Any, **options: Any) -> None:
        if options["client"] is not None:
            soak.client(options["client"])
            return
        results = soak.run(clients=options["clients"], parallel=options["parallel"], say=self.stderr.write)
        for key in (
            "owners",
            "killed",
            "kill_to_uncounted_ms",
            "exited",
            "before_sweep",
            "sweep",
            "after_sweep",
        ):
            self.stdout.write(f"{key:<16}{results[key]}")
        self.stdout.write(
            f"worker RSS {results['worker_rss_kib_after_first_wave']} KiB after the first wave, "
            f"{results['worker_rss_kib_end']} KiB at the end ({results['worker_rss_growth_pct']:+} %)"
        )
        options["json"].parent.mkdir(parents=True, exist_ok=True)
        options["json"].write_text(json.dumps(results, indent=2, default=str))

"""Benchmark the streams: latency, fan-out to many open streams, memory per stream, connect churn."""

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

from benchmarks import streams_bench


class Command(BaseCommand):
    help = "Measure Server-Sent Events streams on one uvicorn process with a real worker and aiohttp clients."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--streams", type=int, default=10_000, help="open streams in the fan-out run")
        parser.add_argument("--repeats", type=int, default=15, help="notifications sent to all of them")
        parser.add_argument(
            "--no-baseline",
            dest="baseline",
            action="store_false",
            help="skip the fan-out on a server without OBSERVERS_STREAM_GC_FREEZE",
        )
        parser.add_argument("--notifications", type=int, default=300, help="timed single-watcher notifies")
        parser.add_argument("--churn", type=int, default=100_000, help="connects and disconnects (0: none)")
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--json", type=Path, default=Path(".bench/observers_streams_bench.json"))

    def handle(self, *args: Any, **options: Any) -> None:
        results = streams_bench.run(port=options["port"], options=options, say=self.stdout.write)
        options["json"].parent.mkdir(parents=True, exist_ok=True)
        options["json"].write_text(json.dumps(results, indent=2))
        self.stdout.write(json.dumps(results, indent=2))

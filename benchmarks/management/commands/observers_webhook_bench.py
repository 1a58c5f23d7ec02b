"""Benchmark webhook delivery to a local receiver; prints a table, writes JSON."""

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

from benchmarks import webhook_bench


class Command(BaseCommand):
    help = "Measure webhooks per second from one worker to a local HTTP receiver on 127.0.0.1."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--endpoints", type=int, default=10, help="webhook observers of the variable")
        parser.add_argument("--notifications", type=int, default=200, help="notifications timed per run")
        parser.add_argument(
            "--concurrency", default="2,8", help="worker pool sizes, one run each (comma-separated)"
        )
        parser.add_argument(
            "--reply-delay-ms", type=float, default=0.0, help="the receiver's time to answer each POST"
        )
        parser.add_argument("--json", type=Path, default=Path(".bench/observers_webhook_bench.json"))

    def handle(self, *args: Any, **options: Any) -> None:
        results = webhook_bench.run(
            workdir=options["json"].parent,
            endpoints=options["endpoints"],
            notifications=options["notifications"],
            concurrencies=[int(n) for n in options["concurrency"].split(",")],
            reply_delay_ms=options["reply_delay_ms"],
            progress=lambda text: self.stderr.write(f"... {text}"),
        )
        self.stdout.write(
            f"{results['endpoints']} endpoints x {results['notifications']} notifications, one worker, "
            f"receiver answering after {results['reply_delay_ms']} ms"
        )
        self.stdout.write(
            f"{'pool':<10}{'webhooks/s':>12}{'seconds':>10}{'p50 ms':>10}{'p99 ms':>10}{'CPU ms/webhook':>16}"
        )
        for run in results["runs"]:
            self.stdout.write(
                f"-c {run['concurrency']:<7}{run['webhooks_per_s']:>12}{run['seconds']:>10}"
                f"{run['latency_p50_ms']:>10}{run['latency_p99_ms']:>10}{run['worker_cpu_ms_per_webhook']:>16}"
            )
        options["json"].write_text(json.dumps(results, indent=2))
        self.stdout.write(f"wrote {options['json']}")

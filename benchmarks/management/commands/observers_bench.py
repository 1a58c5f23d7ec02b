"""Benchmark the hub against the configured broker and database; prints a table, writes JSON."""

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

from benchmarks import admin_bench, bench, durable_bench, scale_bench


class Command(BaseCommand):
    help = "Measure notify_observers latency and fan-out, against one Celery task per observer."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--calls", type=int, default=2000, help="timed notify calls per observer count")
        parser.add_argument("--observers", type=int, default=10000, help="observers in the fan-out run")
        parser.add_argument("--repeats", type=int, default=3, help="hub fan-out runs (median reported)")
        parser.add_argument("--json", type=Path, default=Path(".bench/observers_bench.json"))
        parser.add_argument(
            "--scale", action="store_true", help="only run scale-out (1-3 workers) and the memory checks"
        )
        parser.add_argument(
            "--spread-brokers",
            action="store_true",
            help="with --scale: only the scale-out, worker n connecting first to the n-th node that "
            "CELERY_BROKER_URL lists (a cluster, ;-separated)",
        )
        parser.add_argument(
            "--stop-node",
            default="",
            metavar="NODE",
            help="with --scale --spread-brokers: also a run that stops this node (a, b or c) of "
            "scripts/rabbitmq-local-cluster.sh midway",
        )
        parser.add_argument(
            "--durable",
            action="store_true",
            help="only durable mode against fast: latency and sustained rate",
        )
        parser.add_argument(
            "--admin",
            type=int,
            metavar="ROWS",
            default=0,
            help="only time the admin pages with ROWS observer rows",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["scale"]:
            spread = options["spread_brokers"]
            results = scale_bench.run(
                workdir=options["json"].parent,
                say=self.stdout.write,
                spread_brokers=spread,
                stop_node=options["stop_node"],
            )
            name = "observers_scale_cluster.json" if spread else "observers_scale_bench.json"
            path = options["json"].with_name(name)
            path.write_text(json.dumps(results, indent=2))
            self.stdout.write(json.dumps(results, indent=2))
            return
        if options["durable"]:
            results = durable_bench.run(calls=options["calls"], progress=self.stdout.write)
            self.stdout.write(json.dumps(results, indent=2))
            options["json"].parent.mkdir(parents=True, exist_ok=True)
            options["json"].with_name("observers_durable_bench.json").write_text(
                json.dumps(results, indent=2)
            )
            return
        if options["admin"]:
            results = admin_bench.run(rows=options["admin"], say=self.stdout.write)
            path = options["json"].with_name("observers_admin_bench.json")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(results, indent=2))
            self.stdout.write(f"wrote {path}")
            return
        out = options["json"]
        results = bench.run(
            workdir=out.parent,
            calls=options["calls"],
            fanout_observers=options["observers"],
            repeats=options["repeats"],
            progress=lambda text: self.stderr.write(f"... {text}"),
        )
        self.stdout.write(f"database {results['database']}, broker {results['broker']}\n")
        self.stdout.write(f"{'caller latency':<32}{'p50 us':>10}{'p99 us':>10}{'max us':>10}")
        for name, row in results["caller_latency"].items():
            self.stdout.write(f"{name:<32}{row['p50_us']:>10}{row['p99_us']:>10}{row['max_us']:>10}")
        fan = results["fan_out"]
        self.stdout.write(f"\nfan-out to {fan['observers']} observers, one worker (prefork -c 2)")
        self.stdout.write(
            f"  hub:   {fan['hub_s'] * 1000:9.1f} ms  ({fan['hub_callbacks_per_s']} callbacks/s)"
        )
        self.stdout.write(
            f"  naive: {fan['naive_s'] * 1000:9.1f} ms  ({fan['naive_callbacks_per_s']} callbacks/s)"
        )
        self.stdout.write(f"  speedup: {fan['speedup']}x")
        out.write_text(json.dumps(results, indent=2))
        self.stdout.write(f"\nwrote {out}")

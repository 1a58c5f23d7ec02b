"""Benchmark the hub against the configured broker and database; prints a table, writes JSON."""

import itertools
import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

from benchmarks import admin_bench, async_bench, bench, durable_bench, presence_bench, scale_bench


class Command(BaseCommand):
    help = "Measure notify_observers latency and fan-out, against one Celery task per observer."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--calls", type=int, default=2000, help="timed notify calls per observer count")
        parser.add_argument(
            "--observers",
            type=int,
            nargs="+",
            default=[10000, 100000],
            help="observers in each fan-out run (the first also runs the naive way)",
        )
        parser.add_argument("--repeats", type=int, default=3, help="hub fan-out runs (median reported)")
        parser.add_argument("--no-naive", action="store_true", help="skip the one-task-per-observer run")
        parser.add_argument("--fan-out-only", action="store_true", help="only the fan-out runs")
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
            "--async-api",
            action="store_true",
            help="only the async API: the event loop's longest stall while --calls anotify_observers "
            "run, against a plain loop, and the cost of one call on the loop and on the sync thread",
        )
        parser.add_argument(
            "--presence",
            action="store_true",
            help="only presence: notify to distinct unobserved names, add_observer and remove_observer "
            "against a bare INSERT, the view's memory and load time with 1,000,000 observed names",
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
            self.stdout.write(json.dumps(results, indent=2))
            self._save(
                options, "observers_scale_cluster.json" if spread else "observers_scale_bench.json", results
            )
            return
        if options["durable"]:
            results = durable_bench.run(calls=options["calls"], progress=self.stdout.write)
            self.stdout.write(json.dumps(results, indent=2))
            for turn in (1, 2):
                if f"paced_durable_{turn}" not in results:
                    continue
                bare, durable = results[f"paced_bare_insert_{turn}"], results[f"paced_durable_{turn}"]
                self.stdout.write(
                    f"paced {durable_bench.PACED_RATE}/s, turn {turn}: "
                    f"durable notify p50 {durable['p50_us']} us, p99 {durable['p99_us']} us; "
                    f"bare INSERT p50 {bare['p50_us']} us, p99 {bare['p99_us']} us; "
                    f"p99 ratio {durable['p99_us'] / bare['p99_us']:.2f}x"
                )
            self._save(options, "observers_durable_bench.json", results)
            return
        if options["async_api"]:
            results = async_bench.run(
                calls=options["calls"], rounds=options["repeats"], progress=self.stderr.write
            )
            self._write_async(results)
            self._save(options, "observers_async_bench.json", results)
            return
        if options["presence"]:
            results = presence_bench.run(calls=options["calls"], progress=self.stderr.write)
            self._write_presence(results)
            self._save(options, "observers_presence_bench.json", results)
            return
        if options["admin"]:
            results = admin_bench.run(rows=options["admin"], say=self.stdout.write)
            self._save(options, "observers_admin_bench.json", results)
            return
        out = options["json"]
        results = bench.run(
            workdir=out.parent,
            calls=options["calls"],
            fanout_observers=tuple(options["observers"]),
            repeats=options["repeats"],
            naive=not options["no_naive"],
            fan_out_only=options["fan_out_only"],
            progress=lambda text: self.stderr.write(f"... {text}"),
        )
        self.stdout.write(f"database {results['database']}, broker {results['broker']}\n")
        if "caller_latency" in results:
            self._write_caller(results)
        for fan in results["fan_out"]:
            self.stdout.write(f"\nfan-out to {fan['observers']} observers, one worker (prefork -c 2)")
            self.stdout.write(
                f"  hub:   {fan['hub_s'] * 1000:9.1f} ms  ({fan['hub_callbacks_per_s']} callbacks/s), "
                f"{fan['hub_over_callbacks']}x the callback time per pool process "
                f"({fan['callbacks_per_process_s'] * 1000:.1f} ms)"
            )
            self.stdout.write(
                f"  plumbing floor: {fan['plumbing_s'] * 1000:.1f} ms, "
                f"{fan['plumbing_over_callbacks']}x the callback time per pool process "
                f"(two Celery tasks, no database); hub {fan['hub_over_plumbing']}x it; "
                f"both tasks sent by the caller: {fan['plumbing_one_hop_over_callbacks']}x"
            )
            self.stdout.write(
                f"  worker CPU: {fan['worker_cpu_s'] * 1000:.0f} ms, "
                f"{fan['worker_cpu_over_callbacks']}x the callbacks' own CPU"
            )
            if "naive_s" in fan:
                self.stdout.write(
                    f"  naive: {fan['naive_s'] * 1000:9.1f} ms  ({fan['naive_callbacks_per_s']} "
                    f"callbacks/s), hub speedup {fan['speedup']}x"
                )
        sizes = results["fan_out"]
        for small, large in itertools.pairwise(sizes):
            ratio = large["hub_s"] / small["hub_s"]
            self.stdout.write(f"{large['observers']} vs {small['observers']} observers: {ratio:.1f}x")
        self._save(options, out.name, results)

    def _save(self, options: dict[str, Any], name: str, results: dict[str, Any]) -> None:
        """Write ``results`` as JSON beside the --json path, under ``name``."""
        path = options["json"].with_name(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2))
        self.stdout.write(f"wrote {path}")

    def _write_presence(self, results: dict[str, Any]) -> None:
        notify = results["notify"]
        self.stdout.write(
            f"{'notify_observers (median round)':<44}{'p50 us':>10}{'p99 us':>10}{'min p99':>10}"
        )
        for key in ("observed_cached", "distinct_unobserved", "distinct_unobserved_views_off"):
            row = notify[key]
            self.stdout.write(f"{key:<44}{row['p50_us']:>10}{row['p99_us']:>10}{row['lowest_p99_us']:>10}")
        self.stdout.write(f"p99 distinct / observed, each round: {notify['p99_distinct_over_observed']}")
        add = results["add"]
        self.stdout.write(
            f"\n{'ms (views registered: ' + str(add['views']) + ')':<44}{'p50':>10}{'p99':>10}{'max':>10}"
        )
        for key in (
            "floor_bare_insert",
            "learn_time",
            "add_fresh",
            "add_already_observed",
            "add_just_notified",
            "remove",
            "add_fresh_no_view",
        ):
            row = add[key]
            self.stdout.write(f"{key:<44}{row['p50_ms']:>10}{row['p99_ms']:>10}{row['max_ms']:>10}")
        self.stdout.write(f"(add_fresh_no_view: {add['views_then']} views registered then)")
        self.stdout.write(f"a view's start (few names): {results['view_start_s']} s")
        self.stdout.write(
            f"10,000 add_observer in a row: {results['add_10000_in_a_row_s']} s "
            f"(10,000 bare INSERTs: {results['floor_bare_insert_10000_in_a_row_s']} s)"
        )
        self.stdout.write(f"view with 1,000,000 names: {json.dumps(results['view_million'])}")

    def _write_caller(self, results: dict[str, Any]) -> None:
        self.stdout.write(f"{'caller latency':<40}{'p50 us':>10}{'p99 us':>10}{'min p99':>10}{'max us':>10}")
        latency = results["caller_latency"]
        for name, row in latency.items():
            if "p99_us" in row:
                lowest = row.get("p99_min_us", "")
                self.stdout.write(
                    f"{name:<40}{row['p50_us']:>10}{row['p99_us']:>10}{lowest:>10}{row['max_us']:>10}"
                )
        for name, ratio in latency["p99_over_observed_cached"].items():
            self.stdout.write(f"p99 {name} / observed_cached in the same rounds: {ratio}x")
        registration = latency["register_globs"]
        self.stdout.write(f"registering {registration['globs']} globs: {registration['seconds']} s")
        page = results["page"]
        self.stdout.write(
            f"\none page of {page['observers']} observers in-process: {page['page_ms']} ms "
            f"({page['callbacks_ms']} ms callbacks, {page['overhead_ms']} ms the rest); CPU "
            f"{page['page_cpu_ms']} ms ({page['callbacks_cpu_ms']} ms callbacks)"
        )

    def _write_async(self, results: dict[str, Any]) -> None:
        rounds = f"median of {results['rounds']} rounds of {results['calls']} calls"
        self.stdout.write(f"{'one call, ' + rounds:<60}{'p50 us':>10}{'p99 us':>10}{'mean us':>10}")
        for name, row in results["per_call"].items():
            self.stdout.write(f"{name:<60}{row['p50_us']:>10}{row['p99_us']:>10}{row['mean_us']:>10}")
        header = f"{'wall ms':>10}{'stall ms':>10}  longest stall per round"
        self.stdout.write(f"\n{'the loop, ' + rounds:<60}{header}")
        for name, row in results["stalls"].items():
            per_round = ", ".join(f"{ms:.2f}" for ms in row["longest_stall_ms_per_round"])
            figures = f"{row['wall_ms']:>10.1f}{row['longest_stall_ms']:>10.2f}"
            self.stdout.write(f"{name:<60}{figures}  {per_round}")

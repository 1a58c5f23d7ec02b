"""Sustained load on the hub: a paced ramp to the highest bounded rate, then a steady run below it."""

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from benchmarks import load


def _rates(text: str) -> tuple[int, ...]:
    rates = tuple(int(rate) for rate in text.split(","))
    if not rates or min(rates) <= 0:
        raise ValueError("rates must be positive callbacks/s, comma-separated")
    return rates


def _share(caller: dict[str, Any]) -> str:
    share = caller.get("slowest_1pct_runqueue_share")
    return "-" if share is None else f"{share:.0%}"


def _ms(value: float | None) -> str:
    return "undeliv." if value is None else f"{value:.1f}"


class Command(BaseCommand):
    help = (
        f"Notify {load.VARIABLES} variables of {load.OBSERVERS_PER_VARIABLE} observers each at paced "
        "rates; report delivered callbacks/s, notify-to-callback latency and the caller's latency."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workers", type=int, default=1, help="worker processes, prefork -c 2 each")
        parser.add_argument(
            "--rates",
            type=_rates,
            default=load.RATES,
            help="ramp steps in callbacks/s, comma-separated (default: %(default)s)",
        )
        parser.add_argument("--step-seconds", type=float, default=15.0, help="seconds per ramp step")
        parser.add_argument("--seconds", type=float, default=60.0, help="seconds of the steady run")
        parser.add_argument(
            "--worker-nice", type=int, default=0, help="run the workers at this CPU priority (nice), 0-19"
        )
        parser.add_argument(
            "--history",
            choices=("on", "off", "both"),
            default="on",
            help="the workers keep the notification history (OBSERVERS_HISTORY); both: a ramp with it "
            "off, then one with it on, in the same run (default: %(default)s)",
        )
        parser.add_argument("--json", type=Path, default=Path(".bench/observers_load.json"))

    def handle(self, *args: Any, **options: Any) -> None:
        out = options["json"]
        results = load.run(
            workdir=out.parent,
            workers=options["workers"],
            rates=options["rates"],
            step_s=options["step_seconds"],
            steady_s=options["seconds"],
            worker_nice=options["worker_nice"],
            say=lambda text: self.stderr.write(f"... {text}"),
            history={"on": (True,), "off": (False,), "both": (False, True)}[options["history"]],
        )
        out.write_text(json.dumps(results, indent=2))
        if "history_on_to_off" in results:
            for key in ("history_off", "history_on"):
                self.stdout.write(f"\n{key.replace('_', ' ')}:")
                self.write_table({**results, **results[key]})
            self.stdout.write(f"\nmax sustained, history on / off: {results['history_on_to_off']}")
        else:
            self.write_table(results)
        self.stdout.write(f"\nwrote {out}")

    def write_table(self, results: dict[str, Any]) -> None:
        self.stdout.write(
            f"\ndatabase {results['database']}, broker {results['broker']}, {results['workers']} worker(s) "
            f"prefork -c 2 at nice {results['worker_nice']}, "
            f"{results['variables']} variables x {results['observers_per_variable']} observers"
        )
        self.stdout.write(f"ramp, {results['step_seconds']:g} s steps; bounded: {results['bounded_rule']}")
        self.stdout.write(
            f"{'target':>8}{'offered':>9}{'deliv.':>9}{'p50 ms':>9}{'p99 ms':>9}{'p50 1/3':>9}{'p50 3/3':>9}"
            f"{'call p50':>10}{'call p99':>10}{'slow: rq':>9}{'backlog':>8}"
            f"  {'cores: workers pg mq caller machine':<36}bounded"
        )
        for step in results["ramp"]:
            self.stdout.write(self.row(step, step["latency_second_half"]))
        sustained = results["max_sustained_callbacks_per_s"]
        self.stdout.write(
            "(target/offered/deliv. in callbacks/s; p50/p99: notify to callback, notifications of the "
            "second half; p50 1/3, 3/3: first and last third; call: notify_observers in us; slow: rq: of "
            "the slowest 1 % of calls' time, the share spent waiting for a CPU in the kernel's run queue; "
            "backlog: dispatch messages in the broker at the step's end; cores: CPU cores busy on average)"
        )
        self.stdout.write(f"max sustained: {sustained if sustained else 'none'} callbacks/s")
        settle = results["settle"]
        self.stdout.write(
            f"after the ramp: waited {settle['waited_s']} s for its backlog, "
            f"purged {settle['callbacks_purged']} callbacks"
        )
        steady = results["steady"]
        if steady is None:
            return
        whole, caller = steady["latency_whole"], steady["caller"]
        self.stdout.write(
            f"\nsteady, {steady['seconds']:g} s at {steady['target_callbacks_per_s']} callbacks/s "
            f"({load.STEADY_FRACTION:.0%} of max sustained)"
        )
        self.stdout.write(f"  offered               {steady['offered_callbacks_per_s']:>10} callbacks/s")
        self.stdout.write(f"  delivered             {steady['delivered_callbacks_per_s']:>10} callbacks/s")
        self.stdout.write(
            f"  notify-to-callback    p50 {_ms(whole['p50_ms'])} ms, p99 {_ms(whole['p99_ms'])} ms"
        )
        self.stdout.write(
            f"  caller notify         p50 {caller['p50_us']} us, p99 {caller['p99_us']} us, "
            f"max {caller['max_us']} us"
        )
        if "slowest_1pct_mean_us" in caller:
            self.stdout.write(
                f"  its slowest 1 %       mean {caller['slowest_1pct_mean_us']} us: "
                f"CPU {caller['slowest_1pct_cpu_share']:.0%}, "
                f"run queue {caller['slowest_1pct_runqueue_share']:.0%}, "
                f"blocked {caller['slowest_1pct_blocked_share']:.0%}"
            )
        self.stdout.write(f"  bounded               {steady['bounded']}")
        self.stdout.write(f"  cores                 {steady['cpu_cores']}")

    def row(self, phase: dict[str, Any], latency: dict[str, Any]) -> str:
        cpu, caller = phase["cpu_cores"], phase["caller"]
        cores = " ".join(
            f"{cpu[name]:.2f}" for name in ("workers", "postgres", "rabbitmq", "notifier", "machine")
        )
        return (
            f"{phase['target_callbacks_per_s']:>8}{phase['offered_callbacks_per_s']:>9}"
            f"{phase['delivered_callbacks_per_s']:>9}{_ms(latency['p50_ms']):>9}{_ms(latency['p99_ms']):>9}"
            f"{_ms(phase['latency_first_third']['p50_ms']):>9}{_ms(phase['latency_last_third']['p50_ms']):>9}"
            f"{caller['p50_us']:>10}{caller['p99_us']:>10}{_share(caller):>9}{phase['backlog_at_end']:>8}"
            f"  {cores:<36}{phase['bounded']}"
        )

"""The sustained-load benchmark behind ``manage.py observers_load``: paced notifies, a ramp, a steady run."""

import array
import contextlib
import itertools
import os
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import current_app
from django.db import connection, transaction

from benchmarks.bench import append_record
from benchmarks.cpu import TICK, proc_stat, tree_ticks
from observers_app import manager
from observers_app.models import Observer, VariableState
from observers_app.registry import observer_callback
from tests.worker_process import purge_task_queue, running_worker

STAMPS_ENV = "OBSERVERS_LOAD_STAMPS"
CALLBACK = "observers.load.stamp"
STAMP = struct.Struct("dd")  # (the caller's notified_at, the callback's time.time())
VARIABLES = 1000
OBSERVERS_PER_VARIABLE = 100
# Callbacks/s; finer at the low end, where a shared 2-core machine lands.
RATES = tuple(int(k * 1000) for k in (2.5, 5, 7.5, 10, 12.5, 15, 20, 30, 40, 60, 80, 100, 120, 150))
# Unreported: every variable notified once (worker connections, prepared statements, the notifier's
# presence cache, as in a process that has been running).
WARMUP_RATE = 20_000
WARMUP_S = VARIABLES * OBSERVERS_PER_VARIABLE / WARMUP_RATE
DRAIN_S = 2.0  # after a phase, wait at most this long for its callbacks
SETTLE_S = 60.0  # after the ramp, wait at most this long for its backlog, then purge what is left
STEADY_FRACTION = 0.8
# Bounded: p99 under P99_BOUND_S, and p50 of the last third at most GROWTH x that of the first third.
# Below P50_FLOOR_S a doubling is noise on a shared machine, not a queue building up.
P99_BOUND_S = 1.0
GROWTH = 2.0
P50_FLOOR_S = 0.010


@observer_callback(name=CALLBACK)
def stamp(var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]) -> None:
    """Append (notified_at, now) to the stamps file: 16 bytes."""
    append_record(STAMPS_ENV, STAMP.pack(metadata["notified_at"], time.time()))


# Observers


def create_observers() -> list[str]:
    """``load:<n>`` variables with OBSERVERS_PER_VARIABLE observers each, in bulk."""
    delete_observers()
    var_ids = [f"load:{n}" for n in range(VARIABLES)]
    with transaction.atomic():
        Observer.objects.bulk_create(
            [
                Observer(var_id=var_id, callback=CALLBACK)
                for var_id in var_ids
                for _ in range(OBSERVERS_PER_VARIABLE)
            ],
            batch_size=2000,
        )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # VACUUM too: a page of observers is an index-only scan once the visibility map is set.
            cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(Observer._meta.db_table)}")
    return var_ids


def delete_observers() -> None:
    Observer.objects.filter(var_id__startswith="load:").delete()
    VariableState.objects.filter(var_id__startswith="load:").delete()


# The paced notifier


@dataclass
class Paced:
    """What the notifier did in one phase: when it started (wall clock), each call's send time and
    duration, and how far behind its schedule it fell."""

    started_at: float
    seconds: float
    sent_at: list[float] = field(default_factory=list)
    call_s: list[float] = field(default_factory=list)
    # Of each call: the notifier thread's CPU time and its time runnable but waiting for a CPU (the
    # kernel's run queue), where the kernel reports them (Linux), else empty.
    call_cpu_s: list[float] = field(default_factory=list)
    call_runqueue_s: list[float] = field(default_factory=list)
    call_span_s: list[float] = field(default_factory=list)  # the call with the two readings around it
    max_lag_s: float = 0.0


def paced_notify(var_ids: Iterator[str], *, notifies_per_s: float, seconds: float) -> Paced:
    """Call notify_observers on a monotonic schedule, ``notifies_per_s`` for ``seconds``: sleep until
    each call is due, never when behind (it catches up back to back); calls not sent by the end of
    the phase are not sent, so "offered" is what was sent."""
    interval = 1.0 / notifies_per_s
    paced = Paced(started_at=time.time(), seconds=seconds)
    start = time.monotonic()
    end = start + seconds
    for i in itertools.count():
        due = start + i * interval
        now = time.monotonic()
        if due >= end or now >= end:
            break
        if due > now:
            time.sleep(due - now)
        else:
            paced.max_lag_s = max(paced.max_lag_s, now - due)
        paced.sent_at.append(time.time())
        span_started = time.perf_counter()
        before = thread_schedstat()
        started = time.perf_counter()
        manager.notify_observers(next(var_ids), i, i + 1, {"load": True})
        paced.call_s.append(time.perf_counter() - started)
        after = thread_schedstat()
        if before and after:
            paced.call_span_s.append(time.perf_counter() - span_started)
            paced.call_cpu_s.append(after[0] - before[0])
            paced.call_runqueue_s.append(after[1] - before[1])
    return paced


def thread_schedstat() -> tuple[float, float] | None:
    """This thread's CPU time and run-queue wait so far, in seconds (Linux's schedstat), or None."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as stats:
            cpu_ns, runqueue_ns, _ = stats.read().split()
    except OSError:
        return None
    return int(cpu_ns) / 1e9, int(runqueue_ns) / 1e9


# Stamps


class Stamps:
    """The callbacks' stamps file, read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        path.write_bytes(b"")

    def count(self) -> int:
        return self.path.stat().st_size // STAMP.size

    def wait_for(self, expected: int, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count() < expected and time.monotonic() < deadline:
            time.sleep(0.01)

    def read_new(self) -> tuple["array.array[float]", "array.array[float]"]:
        """The stamps written since the last read: (notified_at, called_at) as two arrays."""
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        data = data[: len(data) - len(data) % STAMP.size]
        self.offset += len(data)
        both = array.array("d", data)
        return both[0::2], both[1::2]


# Analysis


def percentile(ordered: list[float], missing: int, q: float) -> float | None:
    """The ``q`` quantile of latencies, counting ``missing`` callbacks (not delivered) as infinite:
    None when it falls on one of them."""
    total = len(ordered) + missing
    if not total:
        return None
    k = min(int(total * q), total - 1)
    return ordered[k] if k < len(ordered) else None


def window_latency(
    notified: "array.array[float]", called: "array.array[float]", sent_at: list[float], lo: float, hi: float
) -> dict[str, Any]:
    """Notify-to-callback latency (ms) of the notifications sent in [lo, hi); None: not delivered."""
    ordered = sorted(c - n for n, c in zip(notified, called, strict=True) if lo <= n < hi)
    expected = sum(1 for t in sent_at if lo <= t < hi) * OBSERVERS_PER_VARIABLE
    missing = max(0, expected - len(ordered))
    p50, p99 = percentile(ordered, missing, 0.50), percentile(ordered, missing, 0.99)
    return {
        "p50_ms": None if p50 is None else round(p50 * 1000, 2),
        "p99_ms": None if p99 is None else round(p99 * 1000, 2),
        "callbacks": len(ordered),
        "missing": missing,
    }


def caller_us(paced: Paced) -> dict[str, float | None]:
    """The caller's p50/p99/max, and where its slowest 1 % of calls spent their time: on the CPU,
    waiting in the kernel's run queue for one, and the rest (blocked: the interpreter lock, a lock).
    The kernel's figures are read just before and after each call, so the shares are of that span
    (the call and the two readings, some microseconds)."""
    call_s = paced.call_s
    if not call_s:
        return {"p50_us": None, "p99_us": None, "max_us": None}
    ordered = sorted(call_s)
    figures: dict[str, float | None] = {
        "p50_us": round(ordered[len(ordered) // 2] * 1e6, 1),
        "p99_us": round(ordered[int(len(ordered) * 0.99)] * 1e6, 1),
        "max_us": round(ordered[-1] * 1e6, 1),
    }
    if len(paced.call_runqueue_s) == len(call_s):
        slowest = sorted(range(len(call_s)), key=call_s.__getitem__)[int(len(call_s) * 0.99) :]
        wall = sum(paced.call_span_s[i] for i in slowest)
        cpu = sum(paced.call_cpu_s[i] for i in slowest)
        runqueue = sum(paced.call_runqueue_s[i] for i in slowest)
        figures["slowest_1pct_mean_us"] = round(wall / len(slowest) * 1e6, 1)
        figures["slowest_1pct_cpu_share"] = round(cpu / wall, 2)
        figures["slowest_1pct_runqueue_share"] = round(runqueue / wall, 2)
        figures["slowest_1pct_blocked_share"] = round(max(0.0, wall - cpu - runqueue) / wall, 2)
    return figures


def is_bounded(first: dict[str, Any], last: dict[str, Any], half: dict[str, Any]) -> bool:
    if first["p50_ms"] is None or last["p50_ms"] is None or half["p99_ms"] is None:
        return False
    return half["p99_ms"] < P99_BOUND_S * 1000 and last["p50_ms"] <= GROWTH * max(
        first["p50_ms"], P50_FLOOR_S * 1000
    )


def analyse(
    paced: Paced, notified: "array.array[float]", called: "array.array[float]", target: int
) -> dict[str, Any]:
    """One phase's figures; latency over its second half, growth from its first third to its last."""
    lo, span = paced.started_at, paced.seconds
    notifies = len(paced.sent_at)
    delivered = sum(1 for n in notified if lo <= n < lo + span)
    first = window_latency(notified, called, paced.sent_at, lo, lo + span / 3)
    last = window_latency(notified, called, paced.sent_at, lo + 2 * span / 3, lo + span)
    half = window_latency(notified, called, paced.sent_at, lo + span / 2, lo + span)
    whole = window_latency(notified, called, paced.sent_at, lo, lo + span)
    return {
        "target_callbacks_per_s": target,
        "seconds": span,
        "notifies": notifies,
        "offered_callbacks_per_s": round(notifies * OBSERVERS_PER_VARIABLE / span),
        "delivered_callbacks_per_s": round(delivered / span),
        "undelivered_after_drain": max(0, notifies * OBSERVERS_PER_VARIABLE - delivered),
        "latency_second_half": half,
        "latency_first_third": first,
        "latency_last_third": last,
        "latency_whole": whole,
        "bounded": is_bounded(first, last, half),
        "caller": caller_us(paced),
        "caller_max_lag_ms": round(paced.max_lag_s * 1000, 1),
    }


# CPU use, to see where the time goes. The machine is shared: "machine" includes other people's work,
# and "postgres" is the whole server (every database).


def _roots(name: str) -> list[int]:
    """The processes called ``name`` whose parent is not: a server's main processes."""
    pids: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == name and (stat := proc_stat(int(entry.name))):
                    pids[int(entry.name)] = int(stat[1])
    return [pid for pid, parent in pids.items() if parent not in pids]


def cpu_snapshot(worker_pids: list[int]) -> dict[str, Any]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    own = proc_stat(os.getpid())
    return {
        "at": time.monotonic(),
        "groups": {
            "workers": sum(map(tree_ticks, worker_pids)),
            "postgres": sum(map(tree_ticks, _roots("postgres"))),
            "rabbitmq": sum(map(tree_ticks, _roots("beam.smp"))),
            "notifier": int(own[11]) + int(own[12]),  # this process alone (utime + stime)
        },
        "machine": (sum(fields) - fields[3] - fields[4], sum(fields)),  # busy, total jiffies
    }


def cpu_cores(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """Cores busy on average between two snapshots, per group and for the whole machine."""
    wall = after["at"] - before["at"]
    cores = {
        name: round((ticks - before["groups"][name]) / TICK / wall, 2)
        for name, ticks in after["groups"].items()
    }
    busy = after["machine"][0] - before["machine"][0]
    total = after["machine"][1] - before["machine"][1]
    cores["machine"] = round(busy / max(total, 1) * (os.cpu_count() or 1), 2)
    return cores


# The run


def dispatch_backlog() -> int:
    """Dispatch messages waiting in the broker (not yet taken by a worker)."""
    with current_app.connection_for_write() as conn:
        channel: Any = conn.default_channel
        return int(channel.queue_declare(current_app.conf.task_default_queue, passive=True).message_count)


def purge_queues() -> None:
    """Empty the hub's queues while workers consume them (purge_task_queue deletes them: not then)."""
    with current_app.connection_for_write() as conn:
        for queue in current_app.amqp.queues.values():
            queue(conn.default_channel).purge()


@dataclass
class Harness:
    var_ids: Iterator[str]
    stamps: Stamps
    workers: list[subprocess.Popen[bytes]]
    sent: int = 0

    @property
    def worker_pids(self) -> list[int]:
        return [worker.pid for worker in self.workers]

    def check_workers(self) -> None:
        dead = [worker.args for worker in self.workers if worker.poll() is not None]
        if dead:
            raise RuntimeError(
                f"a worker exited during the run (see its log under the JSON's folder): {dead}"
            )

    def phase(self, target: int, seconds: float) -> dict[str, Any]:
        """Offer ``target`` callbacks/s for ``seconds``, drain briefly, and measure."""
        before = cpu_snapshot(self.worker_pids)
        paced = paced_notify(self.var_ids, notifies_per_s=target / OBSERVERS_PER_VARIABLE, seconds=seconds)
        cpu = cpu_cores(before, cpu_snapshot(self.worker_pids))
        backlog = dispatch_backlog()
        self.check_workers()
        self.sent += len(paced.sent_at)
        self.stamps.wait_for(self.sent * OBSERVERS_PER_VARIABLE, timeout=DRAIN_S)
        notified, called = self.stamps.read_new()
        return {**analyse(paced, notified, called, target), "cpu_cores": cpu, "backlog_at_end": backlog}

    def settle(self) -> dict[str, Any]:
        """Let the workers finish every callback sent so far (the backlog of an overloaded step), or
        purge the queues when that takes over SETTLE_S, so the next phase starts on empty queues."""
        started = time.monotonic()
        expected = self.sent * OBSERVERS_PER_VARIABLE
        self.stamps.wait_for(expected, timeout=SETTLE_S)
        left = max(0, expected - self.stamps.count())
        if left:
            purge_queues()
            time.sleep(DRAIN_S)  # what the workers had already taken
        return {"waited_s": round(time.monotonic() - started, 1), "callbacks_purged": left}


def ramp(
    harness: Harness, rates: tuple[int, ...], step_s: float, say: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Steps of increasing rate until the first whose latency is not bounded."""
    steps = []
    for rate in rates:
        say(f"ramp: {rate} callbacks/s for {step_s} s")
        step = harness.phase(rate, step_s)
        steps.append(step)
        say(f"  {_summary(step)}")
        if not step["bounded"]:
            break
    return steps


def _summary(phase: dict[str, Any]) -> str:
    half = phase["latency_second_half"]
    return (
        f"offered {phase['offered_callbacks_per_s']}, delivered {phase['delivered_callbacks_per_s']}, "
        f"p50 {half['p50_ms']} ms, p99 {half['p99_ms']} ms, bounded {phase['bounded']}"
    )


@contextlib.contextmanager
def running_workers(
    count: int, stamps: Path, workdir: Path, *, nice: int, history: bool = True
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` separate worker processes, each prefork -c 2, at CPU priority ``nice``, keeping the
    notification history or not (OBSERVERS_HISTORY)."""
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(
                running_worker(
                    concurrency=2,
                    include=("benchmarks.load",),
                    env={STAMPS_ENV: str(stamps), "OBSERVERS_HISTORY": str(history).lower()},
                    log_path=workdir / f"load-worker-{n}.log",
                    nice=nice,
                )
            )
            for n in range(count)
        ]


def run(
    *,
    workdir: Path,
    workers: int,
    rates: tuple[int, ...],
    step_s: float,
    steady_s: float,
    worker_nice: int,
    say: Callable[[str], None],
    history: tuple[bool, ...] = (True,),
) -> dict[str, Any]:
    """The ramp and the steady run, once per ``history`` setting of the workers (off and on: the
    history's cost, measured in the same run, on the same observers)."""
    workdir.mkdir(parents=True, exist_ok=True)
    stamps_path = workdir / "load-stamps.bin"
    results: dict[str, Any] = {
        "database": connection.vendor,
        "broker": str(current_app.connection_for_write().as_uri()),
        "workers": workers,
        "concurrency_per_worker": 2,
        "worker_nice": worker_nice,
        "variables": VARIABLES,
        "observers_per_variable": OBSERVERS_PER_VARIABLE,
        "step_seconds": step_s,
        "drain_s": DRAIN_S,
        "bounded_rule": f"p99 (second half) < {P99_BOUND_S} s and p50 (last third) <= {GROWTH} x "
        f"max(p50 (first third), {P50_FLOOR_S * 1000:g} ms); undelivered callbacks count as infinite",
        "cpu_count": os.cpu_count(),
    }
    purge_task_queue()
    say(f"creating {VARIABLES} variables x {OBSERVERS_PER_VARIABLE} observers")
    var_ids = create_observers()
    try:
        for keep in history:
            mode = f"history {'on' if keep else 'off'}"
            say(f"{mode}: starting {workers} worker(s), prefork -c 2 each")
            with running_workers(workers, stamps_path, workdir, nice=worker_nice, history=keep) as processes:
                harness = Harness(itertools.cycle(var_ids), Stamps(stamps_path), processes)
                results["history_on" if keep else "history_off"] = _ramp_and_steady(
                    harness, rates, step_s, steady_s, say
                )
            stamps_path.unlink(missing_ok=True)
    finally:
        delete_observers()
        purge_task_queue()
        stamps_path.unlink(missing_ok=True)
    if len(history) == 1:
        results.update(results.pop("history_on" if history[0] else "history_off"))
        results["history"] = history[0]
    else:
        on, off = (results[key]["max_sustained_callbacks_per_s"] for key in ("history_on", "history_off"))
        results["history_on_to_off"] = round(on / off, 3) if on and off else None
    return results


def _ramp_and_steady(
    harness: Harness, rates: tuple[int, ...], step_s: float, steady_s: float, say: Callable[[str], None]
) -> dict[str, Any]:
    """A warm-up, the ramp to the highest bounded rate, its backlog settled, then the steady run."""
    measured: dict[str, Any] = {}
    say(f"warm-up: {WARMUP_RATE} callbacks/s for {WARMUP_S} s")
    measured["warmup"] = harness.phase(WARMUP_RATE, WARMUP_S)
    measured["ramp"] = ramp(harness, rates, step_s, say)
    bounded = [step["target_callbacks_per_s"] for step in measured["ramp"] if step["bounded"]]
    measured["max_sustained_callbacks_per_s"] = max(bounded) if bounded else None
    measured["steady"] = None
    measured["settle"] = harness.settle()
    if bounded and steady_s > 0:
        rate = int(max(bounded) * STEADY_FRACTION)
        say(f"steady: {rate} callbacks/s for {steady_s} s")
        measured["steady"] = harness.phase(rate, steady_s)
        say(f"  {_summary(measured['steady'])}")
    return measured

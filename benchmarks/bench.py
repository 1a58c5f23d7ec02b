"""The benchmark behind ``manage.py observers_bench``: caller latency and fan-out, ours and naive."""

import functools
import json
import os
import statistics
import struct
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import current_app, shared_task
from django.db import connection, transaction

from benchmarks.cpu import TICK, tree_ticks
from observers_app import conf, manager, registry
from observers_app.models import Observer
from observers_app.publishing import buffer
from observers_app.registry import observer_callback
from observers_app.tasks import dispatch
from observers_app.worker import delivery
from tests.worker_process import purge_task_queue, running_worker

STAMPS_ENV = "OBSERVERS_BENCH_STAMPS"
LINES_ENV = "OBSERVERS_BENCH_LINES"
_append_fds: dict[tuple[int, str], int] = {}


def append_record(env_name: str, record: bytes) -> None:
    """Append ``record`` to the file named by ``env_name`` in one atomic write (O_APPEND), on a
    descriptor opened once per process: how benchmark callbacks report to the benchmark."""
    key = (os.getpid(), env_name)
    if key not in _append_fds:
        _append_fds[key] = os.open(os.environ[env_name], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(_append_fds[key], record)


@observer_callback(name="observers.bench.stamp")
def stamp(var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]) -> None:
    """Append the wall-clock time of the call to the stamps file: 8 bytes."""
    append_record(STAMPS_ENV, struct.pack("d", time.time()))


@observer_callback(name="observers.bench.json_line")
def json_line(var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]) -> None:
    """Append a JSON line (the time of the call, the variable, its value, the observer): a small,
    realistic callback, ~17 us a call. The time is fixed-width so that every line of a run has one
    length and the file's size counts the calls."""
    line = {"at": f"{time.time():.6f}", "var_id": var_id, "value": new_value, "ref": metadata["observer_ref"]}
    append_record(LINES_ENV, json.dumps(line).encode() + b"\n")


@shared_task(name="observers.bench.naive_deliver", ignore_result=True)
def naive_deliver(
    observer_ref: str, var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]
) -> None:
    """One task per observer: a literal port of a one-task-per-callback design."""
    observer = Observer.objects.get(id=observer_ref)
    metadata = {**metadata, "observer_ref": observer_ref}
    registry.lookup(observer.callback)(var_id, old_value, new_value, metadata)


# The observer every plumbing-floor callback is called as (any fixed id: the line's length is fixed).
PLUMBING_REF = "00000000-0000-4000-8000-000000000000"


@shared_task(name="observers.bench.plumbing_page", ignore_result=True)
def plumbing_page(var_id: str, count: int) -> None:
    """``count`` calls of the benchmark's callback and nothing else: no database, no hub."""
    metadata = {"bench": True, "observer_ref": PLUMBING_REF, "seq": 1}
    for _ in range(count):
        json_line(var_id, 0, 1, metadata)


@shared_task(name="observers.bench.plumbing_dispatch", ignore_result=True)
def plumbing_dispatch(var_id: str, count: int) -> None:
    """The least any fan-out through Celery over RabbitMQ to two pool processes does: its message
    reaches a pool process, which sends the other one half of the callbacks in one task and calls
    the rest itself, the halves equal (no estimate), nothing read, numbered or recorded."""
    plumbing_page.apply_async((var_id, count - count // 2), queue=naive_queue())
    plumbing_page(var_id, count // 2)


def plumbing_one_hop(var_id: str, count: int) -> None:
    """The two halves sent by the caller itself, one task each: no hand-off inside the worker (nor
    anywhere to number or record the notification once)."""
    plumbing_page.apply_async((var_id, count - count // 2), queue=naive_queue())
    plumbing_page.apply_async((var_id, count // 2), queue=naive_queue())


def naive_queue() -> str:
    """The naive port's own queue: never the default one, which other projects on the host may share."""
    return f"{conf.queue_name()}.bench-naive"


def naive_notify(var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]) -> None:
    for ref in Observer.objects.for_variable(var_id).values_list("id", flat=True).iterator():
        naive_deliver.apply_async((str(ref), var_id, old_value, new_value, metadata), queue=naive_queue())


def percentiles_us(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_us": round(ordered[len(ordered) // 2] * 1e6, 1),
        "p99_us": round(ordered[int(len(ordered) * 0.99)] * 1e6, 1),
        "max_us": round(ordered[-1] * 1e6, 1),
    }


def notify_change(var_id: str, i: int) -> None:
    manager.notify_observers(var_id, i, i + 1, {"bench": True})


def bare_round_trip(i: int) -> None:
    """``SELECT 1`` through Django's cursor: the floor under a variable with no observer."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def bare_publish(producer: Any, i: int) -> None:
    """A kombu publish of a body of the same size, with no Celery headers: the floor under notify
    (to a queue that does not exist: the broker drops it, nobody's worker receives it)."""
    producer.publish(
        '[["bench:latency:none", 1, 2, {"bench": true}, "id", 0.0], {}, {}]',
        routing_key=f"{conf.queue_name()}.bench-floor",
        content_type="application/json",
        content_encoding="utf-8",
    )


def time_calls(call: Callable[[int], object], *, calls: int, warmup: int) -> dict[str, float]:
    for i in range(warmup):
        call(i)
    samples = []
    for i in range(calls):
        started = time.perf_counter()
        call(i)
        samples.append(time.perf_counter() - started)
    return percentiles_us(samples)


def set_observers(var_id: str, count: int, *, callback: str = "observers.bench.stamp") -> None:
    with transaction.atomic():
        Observer.objects.for_variable(var_id).delete()
        Observer.objects.bulk_create(
            [Observer(var_id=var_id, callback=callback) for _ in range(count)], batch_size=2000
        )


GLOB_COUNTS = (100, 1000, 10000)
# Interleaved rounds of each caller-latency case (see _time_rounds).
ROUNDS = 3
# Callbacks timed in this process, before each turn of fan-outs, for the callback time per call.
CALLBACK_SAMPLE = 10_000


def register_globs(patterns: list[str]) -> None:
    """One glob observer per pattern, as an application registers them (one call, one wait)."""
    manager.add_observers(patterns, "observers.bench.stamp", glob=True)


def caller_latency(*, calls: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """notify_observers latency: observed (cached), unobserved without and with N glob observers
    (one ``session:<n>:*`` each), matching one of 10,000 globs; the uncached existence check behind
    them; registering 10,000 globs; floors and Celery's apply_async of the same message."""
    results: dict[str, Any] = {}
    ratios: dict[str, float] = {}
    uncached_check = functools.partial(_time_uncached_check, calls=calls)
    set_observers("bench:latency:observed", 1)

    def against_observed(state: str, others: dict[str, str]) -> None:
        """Time ``others`` (result key -> variable) and the observed variable in the same rounds."""
        observed = f"observed_cached_{state}"
        timed = _time_rounds({observed: "bench:latency:observed", **others}, calls=calls)
        results.update(timed)
        ratios.update({key: round(timed[key]["p99_us"] / timed[observed]["p99_us"], 2) for key in others})

    progress("notify_observers: observed (cached), unobserved, no globs")
    against_observed("no_globs", {"unobserved_no_globs": "bench:latency:unobserved"})
    results["uncached_check_no_globs"] = uncached_check("bench:latency:unobserved")
    registered = 0
    for count in GLOB_COUNTS:
        progress(f"notify_observers: unobserved with {count} globs registered")
        if count == GLOB_COUNTS[-1]:
            # All of them in one timed registration, as an application registering them would.
            Observer.objects.filter(var_id__startswith="session:", is_glob=True).delete()
            started = time.perf_counter()
            register_globs([f"session:{n}:*" for n in range(count)])
            results["register_globs"] = {"globs": count, "seconds": round(time.perf_counter() - started, 3)}
        else:
            register_globs([f"session:{n}:*" for n in range(registered, count)])
        registered = count
        _vacuum()
        others = {f"unobserved_{count}_globs": "bench:latency:unobserved"}
        if count == GLOB_COUNTS[-1]:
            others[f"matching_{count}_globs"] = "session:7:cart"
        against_observed(f"{count}_globs", others)
        results[f"uncached_check_{count}_globs"] = uncached_check("bench:latency:unobserved")
    results[f"uncached_check_matching_{registered}_globs"] = uncached_check("session:7:cart")
    results["p99_over_observed_cached"] = ratios
    Observer.objects.filter(var_id__startswith="session:", is_glob=True).delete()
    progress("floors: a bare database round trip and a bare kombu publish")
    results["floor_db_round_trip"] = time_calls(bare_round_trip, calls=calls, warmup=200)
    with current_app.connection_for_write() as conn:
        results["floor_kombu_publish"] = time_calls(
            functools.partial(bare_publish, conn.Producer()), calls=calls, warmup=200
        )
    progress("Celery apply_async of the same dispatch message (baseline)")
    # To the hub's dispatch queue (emptied before a worker starts), never the host's default queue.
    results["celery_apply_async"] = time_calls(
        lambda i: dispatch.apply_async(
            ("bench:latency:none", i, i + 1, {"bench": True}, "id", 0.0), queue=conf.queue_name()
        ),
        calls=calls,
        warmup=200,
    )
    return results


def _time_rounds(variables: dict[str, str], *, calls: int) -> dict[str, dict[str, float]]:
    """notify_observers to each of ``variables`` (result key -> name), in ROUNDS interleaved rounds of
    ``calls``: the median round's p50 and p99, the lowest p99 (the least disturbed round) and the max.
    On a shared machine one round's p99 is mostly the scheduler's; rounds side by side compare."""
    rounds: dict[str, list[dict[str, float]]] = {key: [] for key in variables}
    for _ in range(ROUNDS):
        for key, var_id in variables.items():
            # Each case starts with an empty outbox: the messages of the case before are not its cost.
            buffer.flush()
            rounds[key].append(time_calls(functools.partial(notify_change, var_id), calls=calls, warmup=200))
    return {
        key: {
            "p50_us": statistics.median(r["p50_us"] for r in timed),
            "p99_us": statistics.median(r["p99_us"] for r in timed),
            "p99_min_us": min(r["p99_us"] for r in timed),
            "max_us": max(r["max_us"] for r in timed),
        }
        for key, timed in rounds.items()
    }


def _time_uncached_check(var_id: str, *, calls: int) -> dict[str, float]:
    """The database lookup a notify makes when this process remembers nothing about the variable."""
    buffer.flush()
    return time_calls(lambda i: Observer.objects.any_for_variable(var_id), calls=min(calls, 1000), warmup=50)


def _vacuum() -> None:
    """Visibility maps up to date, as autovacuum keeps them in a running deployment."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {Observer._meta.db_table}")


def wait_for_stamps(path: Path, expected: int, *, timeout: float) -> float:
    """Block until ``expected`` callbacks have stamped; return the time of the last one."""
    deadline = time.monotonic() + timeout
    while path.stat().st_size < expected * 8:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {path.stat().st_size // 8} of {expected} callbacks in {timeout} s")
        time.sleep(0.002)
    data = path.read_bytes()
    return max(struct.unpack(f"{len(data) // 8}d", data))


def wait_for_lines(path: Path, expected: int, *, timeout: float) -> float:
    """Block until ``expected`` JSON lines (all of one length) are in ``path``; return the latest
    ``at`` among them. Polls the file's size only: reading it as it grows would cost the machine's
    CPU in proportion to the fan-out."""
    deadline = time.monotonic() + timeout
    line_length = 0
    while not line_length or path.stat().st_size < expected * line_length:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {path.stat().st_size} bytes of {expected} lines in {timeout} s")
        if not line_length and path.stat().st_size:
            with path.open("rb") as lines:
                line_length = len(lines.readline())
        time.sleep(0.002)
    return max(float(json.loads(line)["at"]) for line in path.read_bytes().splitlines())


def fan_out_seconds(notify: Callable[[], object], stamps: Path, expected: int) -> float:
    stamps.write_bytes(b"")
    started = time.time()
    notify()
    return wait_for_lines(stamps, expected, timeout=600) - started


def callback_seconds(count: int, stamps: Path) -> tuple[float, float]:
    """The pure callback time of ``count`` calls in this process (the floor under a fan-out): wall
    and CPU seconds (on a shared machine the CPU time is the steadier figure)."""
    metadata = {"bench": True, "observer_ref": str(uuid.uuid4()), "seq": 1}
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        json_line("bench:fanout:0", 0, 1, metadata)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    stamps.write_bytes(b"")
    return seconds, cpu_seconds


def page_seconds(var_id: str, stamps: Path, *, repeats: int = 20) -> dict[str, float]:
    """One deliver task's work in this process (``delivery.deliver`` of a first page), median of
    ``repeats``, against the pure time of its callbacks."""
    size = conf.batch_size()
    upto = Observer.objects.for_variable(var_id).order_by("id").values_list("id", flat=True)[size - 1]
    notification = {
        "var_id": var_id,
        "old_value": 0,
        "new_value": 1,
        "metadata": {"bench": True},
        "notification_id": str(uuid.uuid4()),
        "seq": 1,
        "notified_at": time.time(),
    }
    runs, cpu = [], []
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        delivery.deliver(notification, after=None, upto=upto, globs=[])
        runs.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    callbacks = [callback_seconds(size, stamps) for _ in range(repeats)]
    page, callbacks_s = statistics.median(runs), statistics.median(wall for wall, _ in callbacks)
    page_cpu, callbacks_cpu = statistics.median(cpu), statistics.median(cpu for _, cpu in callbacks)
    return {
        "observers": size,
        "page_ms": round(page * 1000, 2),
        "callbacks_ms": round(callbacks_s * 1000, 2),
        "overhead_ms": round((page - callbacks_s) * 1000, 2),
        "page_cpu_ms": round(page_cpu * 1000, 2),
        "callbacks_cpu_ms": round(callbacks_cpu * 1000, 2),
    }


def fan_out(
    sizes: tuple[int, ...],
    *,
    repeats: int,
    naive: bool,
    worker_pid: int,
    stamps: Path,
    progress: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Notify-to-last-callback time for each number of observers (whose callback appends a JSON
    line), the hub's way, against the pure callback time per pool process and against the same
    callbacks through the least Celery plumbing (``plumbing_dispatch``); the first size also the
    naive way when ``naive``. The sizes take turns in each repeat, and the callback time is measured
    again before each turn: on a shared machine the load drifts, and runs minutes apart do not
    compare."""
    for size in sizes:
        set_observers(f"bench:fanout:{size}", size, callback="observers.bench.json_line")
    _vacuum()
    runs: dict[int, list[float]] = {size: [] for size in sizes}
    worker_cpu: dict[int, list[float]] = {size: [] for size in sizes}
    plumbing_runs: dict[int, list[float]] = {size: [] for size in sizes}
    one_hop_runs: dict[int, list[float]] = {size: [] for size in sizes}
    per_call: list[tuple[float, float]] = []
    for i in range(repeats):
        wall, cpu = callback_seconds(CALLBACK_SAMPLE, stamps)
        per_call.append((wall / CALLBACK_SAMPLE, cpu / CALLBACK_SAMPLE))
        for size in sizes:
            progress(f"fan-out to {size} observers, hub, run {i + 1} of {repeats}")
            notify = functools.partial(notify_change, f"bench:fanout:{size}", i)
            ticks = tree_ticks(worker_pid)
            runs[size].append(fan_out_seconds(notify, stamps, size))
            worker_cpu[size].append((tree_ticks(worker_pid) - ticks) / TICK)
            progress(f"fan-out to {size} observers, plumbing floor, run {i + 1} of {repeats}")
            send = functools.partial(
                plumbing_dispatch.apply_async, (f"bench:fanout:{size}", size), queue=naive_queue()
            )
            plumbing_runs[size].append(fan_out_seconds(send, stamps, size))
            send_halves = functools.partial(plumbing_one_hop, f"bench:fanout:{size}", size)
            one_hop_runs[size].append(fan_out_seconds(send_halves, stamps, size))
    call_s = statistics.median(wall for wall, _ in per_call)
    call_cpu_s = statistics.median(cpu for _, cpu in per_call)
    results: list[dict[str, Any]] = []
    for size in sizes:
        hub = statistics.median(runs[size])
        # Two pool processes share the callbacks: the best a -c 2 worker can do.
        callbacks = call_s * size / 2
        cpu = statistics.median(worker_cpu[size])
        plumbing = statistics.median(plumbing_runs[size])
        one_hop = statistics.median(one_hop_runs[size])
        results.append(
            {
                "observers": size,
                "hub_s": round(hub, 4),
                "hub_runs_s": [round(r, 4) for r in runs[size]],
                "hub_callbacks_per_s": round(size / hub),
                "callback_us": round(call_s * 1e6, 2),
                "callbacks_per_process_s": round(callbacks, 4),
                "hub_over_callbacks": round(hub / callbacks, 2),
                # The same callbacks through the least Celery plumbing, in the same turns: from one
                # worker task (plumbing_dispatch), and sent by the caller as two (plumbing_one_hop).
                "plumbing_s": round(plumbing, 4),
                "plumbing_runs_s": [round(r, 4) for r in plumbing_runs[size]],
                "plumbing_over_callbacks": round(plumbing / callbacks, 2),
                "hub_over_plumbing": round(hub / plumbing, 2),
                "plumbing_one_hop_over_callbacks": round(one_hop / callbacks, 2),
                # The worker's CPU (main and pool processes) against the callbacks' own CPU.
                "worker_cpu_s": round(cpu, 3),
                "worker_cpu_over_callbacks": round(cpu / (call_cpu_s * size), 2),
            }
        )
    if not naive:
        return results
    progress(f"fan-out to {sizes[0]} observers, one Celery task per observer")
    naive_s = fan_out_seconds(lambda: naive_notify(f"bench:fanout:{sizes[0]}", 0, 1, {}), stamps, sizes[0])
    results[0].update(
        naive_s=round(naive_s, 4),
        naive_callbacks_per_s=round(sizes[0] / naive_s),
        speedup=round(naive_s / results[0]["hub_s"], 1),
    )
    return results


def run(
    *,
    workdir: Path,
    calls: int,
    fanout_observers: tuple[int, ...],
    repeats: int,
    naive: bool,
    fan_out_only: bool,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    stamps = workdir / "stamps.jsonl"
    stamps.write_bytes(b"")
    os.environ[LINES_ENV] = str(stamps)
    results: dict[str, Any] = {"database": connection.vendor, "broker": _broker()}
    if not fan_out_only:
        # No worker runs while the caller is timed: the figures are the caller's alone.
        results["caller_latency"] = caller_latency(calls=calls, progress=progress)
        Observer.objects.filter(var_id__startswith="bench:latency:").delete()
        progress("one page of observers delivered in this process")
        set_observers("bench:page", conf.batch_size(), callback="observers.bench.json_line")
        _vacuum()
        results["page"] = page_seconds("bench:page", stamps)
        Observer.objects.filter(var_id="bench:page").delete()
    purge_task_queue()
    progress("starting one worker, prefork -c 2")
    with running_worker(
        concurrency=2,
        include=("benchmarks.bench",),
        env={LINES_ENV: str(stamps)},
        log_path=workdir / "worker.log",
        queues=(naive_queue(),),
    ) as worker:
        results["fan_out"] = fan_out(
            fanout_observers,
            repeats=repeats,
            naive=naive,
            worker_pid=worker.pid,
            stamps=stamps,
            progress=progress,
        )
    Observer.objects.filter(var_id__startswith="bench:fanout:").delete()
    return results


def _broker() -> str:
    return str(current_app.connection_for_write().as_uri())

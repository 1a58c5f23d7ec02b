"""The benchmark behind ``manage.py observers_bench``: caller latency and fan-out, ours and naive."""

import functools
import os
import statistics
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import current_app, shared_task
from django.db import connection, transaction

from benchmarks.worker_process import purge_task_queue, running_worker
from observers_app import manager, registry
from observers_app.models import Observer
from observers_app.registry import observer_callback
from observers_app.tasks import dispatch

STAMPS_ENV = "OBSERVERS_BENCH_STAMPS"
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


@shared_task(name="observers.bench.naive_deliver", ignore_result=True)
def naive_deliver(
    observer_ref: str, var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]
) -> None:
    """One task per observer: a literal port of a one-task-per-callback design."""
    observer = Observer.objects.get(id=observer_ref)
    registry.lookup(observer.callback)(var_id, old_value, new_value, metadata)


def naive_notify(var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]) -> None:
    for ref in Observer.objects.for_variable(var_id).values_list("id", flat=True).iterator():
        naive_deliver.apply_async((str(ref), var_id, old_value, new_value, metadata))


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
    """A kombu publish of a body of the same size, with no Celery headers: the floor under notify."""
    producer.publish(
        '[["bench:latency:none", 1, 2, {"bench": true}, "id", 0.0], {}, {}]',
        routing_key=current_app.conf.task_default_queue,
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


def caller_latency(counts: tuple[int, ...], *, calls: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """notify_observers latency by observer count, and Celery's apply_async of the same message."""
    results: dict[str, Any] = {}
    for count in counts:
        var_id = f"bench:latency:{count}"
        set_observers(var_id, count)
        progress(f"notify_observers with {count} observers")
        results[f"notify_{count}"] = time_calls(
            functools.partial(notify_change, var_id), calls=calls, warmup=200
        )
    progress("the same with 100 glob observers registered (none matching)")
    Observer.objects.bulk_create(
        Observer(var_id=f"bench:glob:{n}:*", is_glob=True, callback="observers.bench.stamp")
        for n in range(100)
    )
    for count in (0, 1):
        results[f"notify_{count}_with_100_globs"] = time_calls(
            functools.partial(notify_change, f"bench:latency:{count}"), calls=calls, warmup=200
        )
    Observer.objects.filter(var_id__startswith="bench:glob:").delete()
    progress("floors: a bare database round trip and a bare kombu publish")
    results["floor_db_round_trip"] = time_calls(bare_round_trip, calls=calls, warmup=200)
    with current_app.connection_for_write() as conn:
        results["floor_kombu_publish"] = time_calls(
            functools.partial(bare_publish, conn.Producer()), calls=calls, warmup=200
        )
    progress("Celery apply_async of the same dispatch message (baseline)")
    results["celery_apply_async"] = time_calls(
        lambda i: dispatch.apply_async(("bench:latency:none", i, i + 1, {"bench": True}, "id", 0.0)),
        calls=calls,
        warmup=200,
    )
    return results


def wait_for_stamps(path: Path, expected: int, *, timeout: float) -> float:
    """Block until ``expected`` callbacks have stamped; return the time of the last one."""
    deadline = time.monotonic() + timeout
    while path.stat().st_size < expected * 8:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {path.stat().st_size // 8} of {expected} callbacks in {timeout} s")
        time.sleep(0.002)
    data = path.read_bytes()
    return max(struct.unpack(f"{len(data) // 8}d", data))


def fan_out_seconds(notify: Callable[[], object], stamps: Path, expected: int) -> float:
    stamps.write_bytes(b"")
    started = time.time()
    notify()
    return wait_for_stamps(stamps, expected, timeout=600) - started


def fan_out(observers: int, *, repeats: int, stamps: Path, progress: Callable[[str], None]) -> dict[str, Any]:
    """Notify-to-last-callback time for ``observers`` observers, the hub's way and the naive way."""
    var_id = "bench:fanout"
    set_observers(var_id, observers)
    progress(f"fan-out to {observers} observers, hub, {repeats} runs")
    hub_runs = [
        fan_out_seconds(functools.partial(notify_change, var_id, i), stamps, observers)
        for i in range(repeats)
    ]
    progress(f"fan-out to {observers} observers, one Celery task per observer")
    naive = fan_out_seconds(lambda: naive_notify(var_id, 0, 1, {}), stamps, observers)
    hub = statistics.median(hub_runs)
    return {
        "observers": observers,
        "hub_s": round(hub, 4),
        "hub_runs_s": [round(r, 4) for r in hub_runs],
        "hub_callbacks_per_s": round(observers / hub),
        "naive_s": round(naive, 4),
        "naive_callbacks_per_s": round(observers / naive),
        "speedup": round(naive / hub, 1),
    }


def run(
    *, workdir: Path, calls: int, fanout_observers: int, repeats: int, progress: Callable[[str], None]
) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    stamps = workdir / "stamps.bin"
    stamps.write_bytes(b"")
    results: dict[str, Any] = {"database": connection.vendor, "broker": _broker()}
    # No worker runs while the caller is timed: the figures are the caller's alone.
    results["caller_latency"] = caller_latency((0, 1, 1000, 10000), calls=calls, progress=progress)
    purge_task_queue()
    Observer.objects.filter(var_id__startswith="bench:latency:").delete()
    progress("starting one worker, prefork -c 2")
    with running_worker(
        concurrency=2,
        include=("benchmarks.bench",),
        env={STAMPS_ENV: str(stamps)},
        log_path=workdir / "worker.log",
    ):
        results["fan_out"] = fan_out(fanout_observers, repeats=repeats, stamps=stamps, progress=progress)
    Observer.objects.filter(var_id="bench:fanout").delete()
    return results


def _broker() -> str:
    return str(current_app.connection_for_write().as_uri())

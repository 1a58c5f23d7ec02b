"""``manage.py observers_bench --scale``: several workers sharing one fan-out (on one broker or a
cluster), and memory under load."""

import contextlib
import re
import struct
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings

from benchmarks.bench import STAMPS_ENV, append_record, set_observers, wait_for_stamps
from benchmarks.soak import worker_rss_kib
from observers_app import manager
from observers_app.publishing import buffer
from observers_app.registry import observer_callback
from tests.worker_process import purge_task_queue, running_worker

REFS_ENV = "OBSERVERS_BENCH_REFS"


@observer_callback(name="observers.bench.record_ref")
def record_ref(var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]) -> None:
    """Append the 16 bytes of the called observer's ref: who was called, and how often."""
    append_record(REFS_ENV, uuid.UUID(metadata["observer_ref"]).bytes)


def caller_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def scale_out(
    workdir: Path, workers: int, observers: int, say: Callable[[str], None], *, spread_brokers: bool = False
) -> dict[str, Any]:
    """One notification to ``observers`` observers, delivered by ``workers`` worker processes. With
    ``spread_brokers``, worker n connects first to the n-th of the nodes CELERY_BROKER_URL lists."""
    refs_path = workdir / f"refs-{workers}.bin"
    refs_path.write_bytes(b"")
    var_id = "bench:scaleout"
    set_observers(var_id, observers, callback="observers.bench.record_ref")
    purge_task_queue()
    with contextlib.ExitStack() as stack:
        _start_workers(stack, workdir, workers, refs_path, spread=spread_brokers, log_name="w")
        started = time.monotonic()
        manager.notify_observers(var_id, 0, 1)
        _wait_for_records(refs_path, observers, size=16, timeout=120)
        elapsed = time.monotonic() - started
        time.sleep(1)  # anything called twice would show up now
    called = _records(refs_path, size=16)
    result: dict[str, Any] = {"workers": workers, "observers": observers, "calls": len(called)}
    result["distinct"] = len(set(called))
    result["seconds"] = round(elapsed, 3)
    result["brokers"] = [_connected_to(workdir / f"w{n}.log") for n in range(workers)]
    say(
        f"{workers} worker processes: {result['calls']} calls, {result['distinct']} distinct, {elapsed:.3f} s"
    )
    return result


@observer_callback(name="observers.bench.record_ref_and_value")
def record_ref_and_value(var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]) -> None:
    """Append the called observer's ref and the notification's new value: 20 bytes."""
    append_record(REFS_ENV, uuid.UUID(metadata["observer_ref"]).bytes + struct.pack("i", new_value))


def failover(workdir: Path, say: Callable[[str], None], *, node: str) -> dict[str, Any]:
    """20 notifications to 10,000 observers, delivered by 3 workers on 3 cluster nodes; cluster node
    ``node`` (where worker 0 and this process connect first) stops after the 6th. Counts the
    (observer, notification) pairs called, and the duplicates."""
    observers, notifications = 10_000, 20
    refs_path = workdir / "refs-failover.bin"
    refs_path.write_bytes(b"")
    var_id = "bench:failover"
    set_observers(var_id, observers, callback="observers.bench.record_ref_and_value")
    purge_task_queue()
    cluster = ["bash", str(settings.BASE_DIR / "scripts" / "rabbitmq-local-cluster.sh")]
    with contextlib.ExitStack() as stack:
        _start_workers(stack, workdir, 3, refs_path, spread=True, log_name="failover-w")
        stack.callback(subprocess.run, [*cluster, "start-node", node], check=True, capture_output=True)
        started = time.monotonic()
        for n in range(notifications):
            manager.notify_observers(var_id, n, n + 1)
            if n == 5:
                subprocess.run([*cluster, "stop-node", node], check=True, capture_output=True)
                stopped_at = time.monotonic() - started
                say(f"  stopped node {node} at {stopped_at:.2f} s")
            time.sleep(0.05)
        flushed = buffer.flush(60)
        _wait_for_records(refs_path, observers * notifications, size=20, timeout=180)
        elapsed = time.monotonic() - started
        time.sleep(2)  # anything called twice would show up now
    calls = _records(refs_path, size=20)
    result = {
        "observers": observers,
        "notifications": notifications,
        "stopped_node": node,
        "stopped_at_s": round(stopped_at, 2),
        "outbox_flushed": flushed,
        "calls": len(calls),
        "distinct_pairs": len(set(calls)),
        "duplicates": len(calls) - len(set(calls)),
        "seconds": round(elapsed, 2),
        "reconnected": [_connected_to(workdir / f"failover-w{n}.log", last=True) for n in range(3)],
    }
    say(
        f"failover: {result['distinct_pairs']} of {observers * notifications} (observer, notification) "
        f"pairs, {result['duplicates']} duplicates, {elapsed:.1f} s"
    )
    return result


def _start_workers(
    stack: contextlib.ExitStack, workdir: Path, count: int, refs_path: Path, *, spread: bool, log_name: str
) -> None:
    """``count`` worker processes (prefork -c 2) whose callbacks record to ``refs_path``; with
    ``spread``, worker n connects first to the n-th of the nodes CELERY_BROKER_URL lists."""
    nodes = str(settings.CELERY_BROKER_URL).split(";")
    for n in range(count):
        env = {REFS_ENV: str(refs_path)}
        if spread:
            first = n % len(nodes)
            env["CELERY_BROKER_URL"] = ";".join(nodes[first:] + nodes[:first])
        stack.enter_context(
            running_worker(
                concurrency=2,
                include=("benchmarks.scale_bench",),
                env=env,
                log_path=workdir / f"{log_name}{n}.log",
            )
        )


def _wait_for_records(path: Path, count: int, *, size: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while path.stat().st_size < count * size and time.monotonic() < deadline:
        time.sleep(0.01)


def _records(path: Path, *, size: int) -> list[bytes]:
    data = path.read_bytes()
    return [data[i : i + size] for i in range(0, len(data), size)]


def _connected_to(log_path: Path, *, last: bool = False) -> str:
    """The broker node a worker's log says it connected to (first, or ``last``)."""
    found = re.findall(r"Connected to (\S+)", log_path.read_text(errors="replace"))
    return (found[-1] if last else found[0]) if found else "?"


def worker_memory(workdir: Path, callbacks: int, say: Callable[[str], None]) -> dict[str, Any]:
    """Worker RSS after warm-up and after ``callbacks`` callbacks (1,000 observers a notification)."""
    stamps = workdir / "memory-stamps.bin"
    stamps.write_bytes(b"")
    var_id = "bench:memory"
    set_observers(var_id, 1000)
    purge_task_queue()
    samples = []
    with running_worker(
        concurrency=2,
        include=("benchmarks.bench",),
        env={STAMPS_ENV: str(stamps)},
        log_path=workdir / "wm.log",
    ) as worker:
        rounds = callbacks // 1000
        for n in range(rounds):
            manager.notify_observers(var_id, n, n + 1)
            if (n + 1) % 100 == 0:
                wait_for_stamps(stamps, (n + 1) * 1000, timeout=300)
                samples.append(worker_rss_kib(worker.pid))
                if len(samples) % 2 == 0:
                    say(f"  {(n + 1) * 1000} callbacks: worker RSS {samples[-1] // 1024} MiB")
    return {"callbacks": callbacks, **_growth(samples)}


def caller_memory(calls: int, say: Callable[[str], None]) -> dict[str, Any]:
    """The notifying process's RSS after warm-up and after ``calls`` notify_observers calls."""
    var_id = "bench:caller-memory"
    set_observers(var_id, 1)
    samples = []
    for n in range(calls):
        manager.notify_observers(var_id, n, n + 1, {"n": n})
        if (n + 1) % 100_000 == 0:
            buffer.flush(120)  # what the caller holds, not its outbox while it drains
            purge_task_queue()  # no worker here: keep the broker's queues small
            samples.append(caller_rss_kib())
            say(f"  {n + 1} notify calls: caller RSS {samples[-1] // 1024} MiB")
    return {"calls": calls, **_growth(samples)}


def _growth(samples: list[int]) -> dict[str, Any]:
    """RSS (KiB) at the first sample (after 100,000: the warm-up) and the last, and the growth."""
    warm, end = samples[0], samples[-1]
    return {"rss_kib_after_100k": warm, "rss_kib_end": end, "growth_pct": round(100 * (end - warm) / warm, 2)}


def run(
    *, workdir: Path, say: Callable[[str], None], spread_brokers: bool = False, stop_node: str = ""
) -> dict[str, Any]:
    """Scale-out with 1-3 worker processes, then (unless ``spread_brokers``: a cluster run) memory;
    with ``stop_node``, a cluster run that stops that node midway."""
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "broker": settings.CELERY_BROKER_URL.replace("guest:guest", "guest:**"),
        "quorum_queues": settings.OBSERVERS_QUORUM_QUEUES,
        "scale_out": [scale_out(workdir, n, 10_000, say, spread_brokers=spread_brokers) for n in (1, 2, 3)],
    }
    if stop_node:
        results["failover"] = failover(workdir, say, node=stop_node)
    if spread_brokers:
        purge_task_queue()
        return results
    say("worker memory across 1,000,000 callbacks")
    results["worker_memory"] = worker_memory(workdir, 1_000_000, say)
    say("caller memory across 1,000,000 notify calls")
    results["caller_memory"] = caller_memory(1_000_000, say)
    purge_task_queue()
    return results

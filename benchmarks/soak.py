"""The leak check behind ``manage.py observers_soak``: owners that come and go, some killed."""

import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from django.utils import timezone

from benchmarks.demo import on_change
from observers_app import manager
from observers_app.models import Observer, Owner
from tests.worker_process import purge_task_queue, running_worker

LEASES_PER_CLIENT = 19  # plus the client's process owner: 20 owners per client
OBSERVERS_PER_OWNER = 5
NOTIFY_ROUNDS = 5
LEASE_TTL_S = 2.0


def client(index: int) -> None:
    """One short-lived process: a process owner and leases, each with observers, notified; some
    leases closed, the rest abandoned to expire. The parent then lets it exit or kills it."""
    owners = [manager.process_owner()] + [
        manager.open_owner(f"soak {index}:{n}", ttl_s=LEASE_TTL_S) for n in range(LEASES_PER_CLIENT)
    ]
    var_ids = [f"soak:{index}:{n}" for n in range(len(owners))]
    for owner, var_id in zip(owners, var_ids, strict=True):
        for _ in range(OBSERVERS_PER_OWNER):
            manager.add_observer(var_id, on_change, owner=owner)
    for round_ in range(NOTIFY_ROUNDS):
        for var_id in var_ids:
            manager.notify_observers(var_id, round_, round_ + 1)
    for owner in owners[1::2]:
        owner.close()
    print("ready", flush=True)
    sys.stdin.readline()  # the parent says when to exit, or kills us


def worker_rss_kib(pid: int) -> int:
    """Resident memory of a worker: its main process and its pool children."""
    pids = [pid] + [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    total = 0
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def run(*, clients: int, parallel: int, say: Callable[[str], None]) -> dict[str, Any]:
    purge_task_queue()
    started = timezone.now()
    results: dict[str, Any] = {"owners": clients * (LEASES_PER_CLIENT + 1), "killed": 0, "exited": 0}
    with running_worker(concurrency=2, include=("benchmarks.demo",)) as worker:
        rss: list[int] = []
        detections: list[float] = []
        for start in range(0, clients, parallel):
            wave = [_spawn(i) for i in range(start, min(start + parallel, clients))]
            for i, process in zip(range(start, clients), wave, strict=False):
                assert process.stdout is not None and process.stdin is not None
                if process.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"soak client {i} failed")
                if i % 3 == 0:
                    process.send_signal(signal.SIGKILL)
                    detections.append(_seconds_until_uncounted(f"soak:{i}:0"))
                    results["killed"] += 1
                else:
                    process.stdin.write("exit\n")
                    process.stdin.flush()
                    results["exited"] += 1
            for process in wave:
                process.wait(timeout=60)
            rss.append(worker_rss_kib(worker.pid))
            say(f"clients {start + len(wave)}/{clients}: worker RSS {rss[-1] // 1024} MiB")
        _wait_idle()
        rss.append(worker_rss_kib(worker.pid))
    time.sleep(LEASE_TTL_S + 0.5)
    results["before_sweep"] = _soak_rows(started)
    results["sweep"] = manager.sweep_dead_observers(grace_s=0)  # removal is measured, not the grace
    results["after_sweep"] = _soak_rows(started)
    results["worker_rss_kib_after_first_wave"] = rss[0]
    results["worker_rss_kib_end"] = rss[-1]
    results["worker_rss_growth_pct"] = round(100 * (rss[-1] - rss[0]) / rss[0], 1)
    results["kill_to_uncounted_ms"] = {
        "median": round(statistics.median(detections) * 1000, 1),
        "max": round(max(detections) * 1000, 1),
    }
    results["stats"] = manager.get_stats()
    return results


def _seconds_until_uncounted(var_id: str, timeout: float = 30) -> float:
    """Seconds from now until the killed process's observers of ``var_id`` stop counting."""
    started = time.monotonic()
    while manager.observer_count(var_id) and time.monotonic() - started < timeout:
        time.sleep(0.002)
    return time.monotonic() - started


def _spawn(index: int) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [sys.executable, "manage.py", "observers_soak", "--client", str(index)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )


def _wait_idle(timeout: float = 120) -> None:
    """Wait until the worker has drained the queue of notifications the clients sent."""
    from celery import current_app

    deadline = time.monotonic() + timeout
    with current_app.connection_for_write() as conn:
        while time.monotonic() < deadline:
            channel: Any = conn.default_channel
            declared = channel.queue_declare(current_app.conf.task_default_queue, passive=True)
            if declared.message_count == 0:
                time.sleep(1)
                return
            time.sleep(0.2)


def _soak_rows(since: datetime) -> dict[str, int]:
    return {
        "observers": Observer.objects.filter(var_id__startswith="soak:").count(),
        "owners": Owner.objects.filter(created_at__gte=since).count(),
    }

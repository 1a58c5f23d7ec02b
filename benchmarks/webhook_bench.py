"""The benchmark behind ``manage.py observers_webhook_bench``: webhooks per second to a local receiver."""

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from django.test import override_settings

from observers_app import manager
from observers_app.models import Observer
from tests.worker_process import purge_task_queue, running_worker

VAR_ID = "bench:webhooks"
# The receiver listens on 127.0.0.1 over plain http: let the guard through for it, here and in the worker.
WORKER_ENV = {"OBSERVERS_WEBHOOK_ALLOW_HTTP": "true", "OBSERVERS_WEBHOOK_ALLOW": "127.0.0.1"}
LOOPBACK = override_settings(OBSERVERS_WEBHOOK_ALLOW_HTTP=True, OBSERVERS_WEBHOOK_ALLOW=["127.0.0.1"])


class _Latencies:
    """Seconds from notify_observers to each POST's arrival, filled by the receiver's threads."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self.lock:
            self.samples.append(seconds)

    def count(self) -> int:
        with self.lock:
            return len(self.samples)


@contextmanager
def receiving(latencies: _Latencies, *, reply_delay_s: float) -> Iterator[str]:
    """A keep-alive HTTP/1.1 server on 127.0.0.1 answering 204 to every POST after ``reply_delay_s``
    (a remote endpoint's round trip and work); yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            notified_at = json.loads(body)["data"]["metadata"]["notified_at"]
            time.sleep(reply_delay_s)
            latencies.add(time.time() - notified_at)
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def _wait(latencies: _Latencies, expected: int, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while latencies.count() < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {latencies.count()} of {expected} webhooks arrived within {timeout} s")
        time.sleep(0.01)


def _percentile_ms(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000, 1)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` and its descendants (its pool), from /proc."""
    return _cpu_ticks(pid) / os.sysconf("SC_CLK_TCK")


def _cpu_ticks(pid: int) -> int:
    ticks = 0
    for thread in Path(f"/proc/{pid}/task").iterdir():
        # utime and stime, fields 14 and 15 of stat, after the parenthesised command name.
        ticks += sum(int(field) for field in (thread / "stat").read_text().rsplit(")", 1)[1].split()[11:13])
        ticks += sum(_cpu_ticks(int(child)) for child in (thread / "children").read_text().split())
    return ticks


def measure(
    *, url: str, latencies: _Latencies, endpoints: int, notifications: int, worker_pid: int
) -> dict[str, Any]:
    """Notify ``notifications`` times a variable with ``endpoints`` webhook observers; time the POSTs,
    and the worker's CPU time they took (which the other processes on the machine do not change)."""
    refs = [manager.add_webhook(VAR_ID, f"{url}/{n}") for n in range(endpoints)]
    try:
        manager.notify_observers(VAR_ID, -1, 0)  # warm: connections, prepared statements, pools
        _wait(latencies, endpoints, timeout=60)
        latencies.samples.clear()
        cpu_before = cpu_seconds(worker_pid)
        started = time.perf_counter()
        for n in range(notifications):
            manager.notify_observers(VAR_ID, n, n + 1)
        expected = endpoints * notifications
        _wait(latencies, expected, timeout=600)
        elapsed = time.perf_counter() - started
        worker_cpu = cpu_seconds(worker_pid) - cpu_before
    finally:
        for ref in refs:
            manager.remove_observer(VAR_ID, ref)
    return {
        "webhooks": expected,
        "seconds": round(elapsed, 2),
        "webhooks_per_s": round(expected / elapsed),
        "worker_cpu_ms_per_webhook": round(worker_cpu / expected * 1000, 2),
        "latency_p50_ms": _percentile_ms(latencies.samples, 0.5),
        "latency_p99_ms": _percentile_ms(latencies.samples, 0.99),
    }


def run(
    *,
    workdir: Path,
    endpoints: int,
    notifications: int,
    concurrencies: list[int],
    reply_delay_ms: float,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    Observer.objects.filter(var_id=VAR_ID).delete()
    results: dict[str, Any] = {
        "endpoints": endpoints,
        "notifications": notifications,
        "reply_delay_ms": reply_delay_ms,
        "runs": [],
    }
    latencies = _Latencies()
    with LOOPBACK, receiving(latencies, reply_delay_s=reply_delay_ms / 1000) as url:
        for concurrency in concurrencies:
            purge_task_queue()
            progress(f"one worker, prefork -c {concurrency}")
            with running_worker(
                concurrency=concurrency, env=WORKER_ENV, log_path=workdir / "webhook_worker.log"
            ) as worker:
                run_result = measure(
                    url=url,
                    latencies=latencies,
                    endpoints=endpoints,
                    notifications=notifications,
                    worker_pid=worker.pid,
                )
            results["runs"].append({"concurrency": concurrency, **run_result})
    return results

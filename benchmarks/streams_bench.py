"""Streams benchmark: one uvicorn process, a real worker and broker, aiohttp clients.

Measures notify-to-event latency for one watcher, one notification reaching N open streams (with the
streams' garbage collection policy, then without it: the baseline), the server's memory per open
stream, and many connects and disconnects (leaks: memory, threads, observers).
"""

import asyncio
import functools
import gc
import os
import resource
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
from django.conf import settings

from observers_app import manager
from observers_app.models import Observer
from observers_app.streams.access import issue_token
from tests.worker_process import running_worker

Say = Callable[[str], None]


def raise_open_files_limit() -> int:
    """Raise this process's open-file limit to its hard limit (the server inherits it)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


@contextmanager
def running_server(port: int, *, gc_freeze: bool = True) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "SECRET_KEY": settings.SECRET_KEY,
        "OBSERVERS_STREAM_GC_FREEZE": str(gc_freeze),
        # Every stream from one address, most with one token: the per-client limits are lifted.
        "OBSERVERS_STREAM_MAX_PER_TOKEN": "1000000",
        "OBSERVERS_STREAM_MAX_PER_ADDRESS": "1000000",
    }
    command = [sys.executable, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--no-access-log", "--lifespan", "off", "--backlog", "8192"]
    process = subprocess.Popen(command, env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # still closing thousands of connections: enough
            process.kill()
            process.wait()


def process_status(pid: int) -> dict[str, int]:
    """RSS (KiB) and threads of a process, from /proc."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "Threads"):
                fields[name] = int(value.split()[0])
    return fields


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Streams:
    """Open streams of one variable, each recording when each notification's event arrived."""

    def __init__(self, base: str, var_id: str) -> None:
        self.url = f"{base}/observers/stream"
        self.params = {"var": var_id, "token": issue_token([var_id])}
        self.arrivals: dict[str, list[float]] = {}
        self.opened = 0
        self.tasks: list[asyncio.Task[None]] = []

    async def open(self, session: aiohttp.ClientSession, count: int, *, parallel: int = 200) -> None:
        gate = asyncio.Semaphore(parallel)
        ready: list[asyncio.Event] = []
        for _ in range(count):
            event = asyncio.Event()
            ready.append(event)
            self.tasks.append(asyncio.create_task(self._read(session, gate, event)))
        for event in ready:
            await event.wait()

    async def _read(
        self, session: aiohttp.ClientSession, gate: asyncio.Semaphore, ready: asyncio.Event
    ) -> None:
        async with gate:
            response = await session.get(self.url, params=self.params)
            await response.content.readuntil(b"\n\n")  # the first chunk: the stream is watching
            self.opened += 1
        ready.set()
        try:
            while chunk := await response.content.readany():
                now = time.time()
                for line in chunk.split(b"\n"):
                    if line.startswith(b"id: "):
                        self.arrivals.setdefault(line[4:].decode(), []).append(now)
        finally:
            response.close()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _more_than(arrivals: dict[str, list[float]], count: int) -> bool:
    return len(arrivals) > count


def _at_least(streams: "Streams", count: int) -> bool:
    return sum(len(times) for times in streams.arrivals.values()) >= count


async def _wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def latency(base: str, session: aiohttp.ClientSession, *, notifications: int) -> dict[str, Any]:
    """notify_observers to the event read by the client, for one watcher, paced every 20 ms."""
    var_id = f"bench:price:{uuid.uuid4().hex[:8]}"
    streams = Streams(base, var_id)
    await streams.open(session, 1)
    samples = []
    for n in range(notifications):
        before = len(streams.arrivals)
        started = time.time()
        await asyncio.to_thread(manager.notify_observers, var_id, n, n + 1)
        if await _wait_until(functools.partial(_more_than, streams.arrivals, before), 10):
            arrived = max(max(times) for times in streams.arrivals.values())
            samples.append((arrived - started) * 1000)
        await asyncio.sleep(0.02)
    await streams.close()
    return {
        "notifications": notifications,
        "received": len(samples),
        "p50_ms": round(statistics.median(samples), 2),
        "p99_ms": round(percentile(samples, 0.99), 2),
        "max_ms": round(max(samples), 2),
    }


async def fan_out(
    base: str, session: aiohttp.ClientSession, server_pid: int, *, streams_count: int, repeats: int, say: Say
) -> dict[str, Any]:
    """One notification to ``streams_count`` open streams of one variable, ``repeats`` times."""
    var_id = f"bench:fan:{uuid.uuid4().hex[:8]}"
    idle = process_status(server_pid)
    streams = Streams(base, var_id)
    opening = time.monotonic()
    await streams.open(session, streams_count)
    opened_s = time.monotonic() - opening
    # The client's own full collections would stall its reading of 10,000 sockets: what is measured
    # is the server. (Frozen until the end of the run; the client's streams close then.)
    gc.freeze()
    await asyncio.sleep(2)  # let the server settle before reading its memory
    loaded = process_status(server_pid)
    say(f"  {streams.opened} streams open in {opened_s:.1f} s; server {loaded}")
    runs = []
    for n in range(repeats):
        server_cpu, client_cpu = cpu_seconds(server_pid), time.process_time()
        started = time.time()
        await asyncio.to_thread(manager.notify_observers, var_id, n, n + 1)
        await _wait_until(functools.partial(_at_least, streams, (n + 1) * streams_count), 30)
        server_cpu, client_cpu = cpu_seconds(server_pid) - server_cpu, time.process_time() - client_cpu
        seq = max(streams.arrivals, key=lambda key: min(streams.arrivals[key]))
        times = streams.arrivals[seq]
        runs.append(
            {
                "reached": len(times),
                "first_ms": round((min(times) - started) * 1000, 1),
                "last_ms": round((max(times) - started) * 1000, 1),
                # CPU each side spent meanwhile: what the fan-out costs, apart from waiting for a core.
                "server_cpu_ms": round(server_cpu * 1000),
                "client_cpu_ms": round(client_cpu * 1000),
            }
        )
        say(f"  notification {n + 1}: {runs[-1]}")
        await asyncio.sleep(1)
    observers = await asyncio.to_thread(Observer.objects.filter(var_id=var_id).count)
    await streams.close()
    gc.unfreeze()
    last = [run["last_ms"] for run in runs]
    return {
        "streams": streams.opened,
        "open_s": round(opened_s, 1),
        "observer_rows_for_the_variable": observers,
        "server_idle": idle,
        "server_with_streams": loaded,
        "kib_per_stream": round((loaded["VmRSS"] - idle["VmRSS"]) / streams_count, 2),
        "runs": runs,
        "last_event_ms_median": statistics.median(last),
        "last_event_ms_max": max(last),
        "runs_over_1s": sum(ms > 1000 for ms in last),
    }


async def churn(
    base: str, session: aiohttp.ClientSession, server_pid: int, *, connects: int, say: Say
) -> dict[str, Any]:
    """``connects`` streams opened and closed (100 at a time): one variable shared by all, and one
    variable of their own for every tenth (an observer added and removed each time)."""
    shared = f"bench:churn:{uuid.uuid4().hex[:8]}"
    before = process_status(server_pid)
    gate = asyncio.Semaphore(100)
    url = f"{base}/observers/stream"
    prefix = f"bench:own:{uuid.uuid4().hex[:8]}:"

    async def one(n: int) -> None:
        var_id = shared if n % 10 else f"{prefix}{n}"
        params = {"var": var_id, "token": issue_token([var_id])}
        async with gate, session.get(url, params=params) as response:
            await response.content.readuntil(b"\n\n")

    started = time.monotonic()
    for start in range(0, connects, 10_000):
        await asyncio.gather(*(one(n) for n in range(start, min(connects, start + 10_000))))
        say(f"  {min(connects, start + 10_000)} connects, server {process_status(server_pid)}")
    elapsed = time.monotonic() - started
    await asyncio.sleep(2)  # the last streams' observers are being removed
    left = await asyncio.to_thread(
        lambda: (
            Observer.objects.filter(var_id__in=[shared]).count()
            + Observer.objects.filter(var_id__startswith=prefix).count()
        )
    )
    after = process_status(server_pid)
    return {
        "connects": connects,
        "per_s": round(connects / elapsed),
        "server_before": before,
        "server_after": after,
        "observer_rows_left": left,
    }


async def _run_all(
    base: str, server_pid: int, options: dict[str, Any], say: Say, *, baseline: bool = False
) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    results: dict[str, Any] = {}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if not baseline:
            say("latency, one watcher")
            results["latency"] = await latency(base, session, notifications=options["notifications"])
            say(f"  {results['latency']}")
        say(f"fan-out to {options['streams']} streams" + (" (baseline: no gc freeze)" if baseline else ""))
        results["fan_out"] = await fan_out(
            base, session, server_pid, streams_count=options["streams"], repeats=options["repeats"], say=say
        )
        if options["churn"] and not baseline:
            say(f"{options['churn']} connects and disconnects")
            results["churn"] = await churn(base, session, server_pid, connects=options["churn"], say=say)
            say(f"  {results['churn']}")
    return results


def run(*, port: int, options: dict[str, Any], say: Say) -> dict[str, Any]:
    """Start a worker and one uvicorn process, then measure (see the module docstring); then the
    fan-out again on a server without the streams' garbage collection policy, the baseline."""
    limit = raise_open_files_limit()
    say(f"open files limit {limit}")
    base = f"http://127.0.0.1:{port}"
    with running_worker(concurrency=2):
        with running_server(port) as server:
            results = asyncio.run(_run_all(base, server.pid, options, say))
        if options["baseline"]:
            with running_server(port, gc_freeze=False) as server:
                baseline = asyncio.run(_run_all(base, server.pid, options, say, baseline=True))
            results["baseline_fan_out"] = baseline["fan_out"]
            results["last_event_median_ratio"] = round(
                results["fan_out"]["last_event_ms_median"] / baseline["fan_out"]["last_event_ms_median"], 2
            )
            results["last_event_max_ratio"] = round(
                results["fan_out"]["last_event_ms_max"] / baseline["fan_out"]["last_event_ms_max"], 2
            )
    results["alive_observers_after"] = manager.total_observers()
    return results

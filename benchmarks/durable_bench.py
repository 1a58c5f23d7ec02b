"""The cost of durable mode: notify_observers inside a transaction, durable against fast, in a tight
loop and paced (one caller at PACED_RATE notifies/s, against a bare INSERT of the same row paced alike
in the same run), and the highest rate one caller sustains (its outbox drained: every message
confirmed, every row deleted)."""

import functools
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction

from benchmarks import bench
from benchmarks.bench import percentiles_us, set_observers
from observers_app import manager
from observers_app.models import Observer, OutboxMessage
from observers_app.publishing import buffer
from tests.worker_process import purge_task_queue

VAR_ID = "bench:durable"
# Notifies/s of the paced runs: one caller notifying at this rate, each in its own transaction.
PACED_RATE = 200
FLOOR_TABLE = "observers_bench_bare_insert"


def _notify_in_transaction(durable: bool, samples: list[float], commits: list[float], i: int) -> None:
    with transaction.atomic():
        # The caller's own change comes first: it opens the transaction (BEGIN is not the hub's cost)
        # and writes, so the commit flushes the WAL in both modes.
        _change_data()
        started = time.perf_counter()
        manager.notify_observers(VAR_ID, i, i + 1, {"bench": True}, durable=durable)
        samples.append(time.perf_counter() - started)
    commits.append(time.perf_counter() - started)  # the notify and the commit


def _change_data() -> None:
    Observer.objects.filter(var_id=VAR_ID).update(failures=0)


def _latency(durable: bool, *, calls: int) -> dict[str, Any]:
    samples: list[float] = []
    commits: list[float] = []
    notify = functools.partial(_notify_in_transaction, durable, samples, commits)
    for i in range(calls + 200):
        notify(i)
        if i % 500 == 0:
            buffer.flush(60)  # no backlog builds up behind the timed calls
    buffer.flush(60)
    return {"notify": percentiles_us(samples[200:]), "notify_and_commit": percentiles_us(commits[200:])}


def _paced(call: Callable[[int], float], *, calls: int, rate: float = PACED_RATE) -> dict[str, float]:
    """``call(i)`` returns its own timed duration; called on a monotonic schedule, ``rate`` per second."""
    samples: list[float] = []
    interval = 1.0 / rate
    start = time.monotonic()
    for i in range(calls + 100):
        due = start + i * interval
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        duration = call(i)
        if i >= 100:
            samples.append(duration)
    buffer.flush(60)
    return percentiles_us(samples)


def _timed_notify(durable: bool, i: int) -> float:
    with transaction.atomic():
        _change_data()
        started = time.perf_counter()
        manager.notify_observers(VAR_ID, i, i + 1, {"bench": True}, durable=durable)
        return time.perf_counter() - started


def _timed_bare_insert(i: int) -> float:
    """The floor under a durable notify: an INSERT of a row like the outbox's, through Django's
    cursor, in a transaction that already wrote."""
    with transaction.atomic():
        _change_data()
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {FLOOR_TABLE} (id, args, created_at) VALUES (%s::uuid, %s, now())",  # noqa: S608
                [str(uuid.uuid4()), f'["{VAR_ID}",{i},{i + 1},{{"bench":true}}]'],
            )
        return time.perf_counter() - started


def _floor_table(create: bool) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
        if create:
            cursor.execute(
                f"CREATE TABLE {FLOOR_TABLE} (id uuid PRIMARY KEY, args text, created_at timestamptz)"
            )


def _sustained(durable: bool, *, calls: int) -> dict[str, Any]:
    """One caller notifying as fast as it can, each in its own transaction; the rate counts until its
    outbox is drained (and, durable, every outbox row deleted)."""
    started = time.perf_counter()
    for i in range(calls):
        with transaction.atomic():
            manager.notify_observers(VAR_ID, i, i + 1, {"bench": True}, durable=durable)
    called = time.perf_counter() - started
    assert buffer.flush(300), "the outbox did not drain"
    while OutboxMessage.objects.exists():
        time.sleep(0.01)
    drained = time.perf_counter() - started
    return {
        "calls": calls,
        "caller_calls_per_s": round(calls / called),
        "sustained_per_s": round(calls / drained),
    }


def run(*, calls: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """Both modes, one observer (its presence cached), no worker running (the queue is purged after)."""
    purge_task_queue()
    set_observers(VAR_ID, 1)
    results: dict[str, Any] = {
        "floor_db_round_trip": bench.time_calls(bench.bare_round_trip, calls=calls, warmup=200)
    }
    if connection.vendor == "postgresql":
        _floor_table(create=True)
        progress(f"paced, {PACED_RATE}/s: bare INSERT and durable notify, {calls} calls each, twice")
        for turn in (1, 2):
            results[f"paced_bare_insert_{turn}"] = _paced(_timed_bare_insert, calls=calls)
            results[f"paced_durable_{turn}"] = _paced(functools.partial(_timed_notify, True), calls=calls)
            results[f"paced_fast_{turn}"] = _paced(functools.partial(_timed_notify, False), calls=calls)
        _floor_table(create=False)
        purge_task_queue()
    for mode, durable in (("fast", False), ("durable", True)):
        progress(f"{mode}: notify_observers inside a transaction, {calls} calls")
        results[f"{mode}_latency"] = _latency(durable, calls=calls)
        progress(f"{mode}: sustained rate of one caller, {calls} calls")
        results[f"{mode}_sustained"] = _sustained(durable, calls=calls)
        purge_task_queue()
    set_observers(VAR_ID, 0)
    return results

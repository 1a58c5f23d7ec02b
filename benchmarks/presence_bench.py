"""``manage.py observers_bench --presence``: what a caller pays for "has it observers?" and for an add.

- notify_observers to distinct unobserved names, each once, against the cached observed path, in the
  same rounds, with 10,000 glob observers registered; the same names asked of the database (views
  off) for comparison;
- add_observer, one at a time, on fresh names and on names just notified while unobserved, with no
  view registered and with this process's view and another process's; the time the views take to
  learn a name (one announcement alone); remove_observer; 10,000 adds one after another; the floor:
  a bare INSERT through Django's cursor;
- the view's memory and load time with 1,000,000 observed names (rows written in a transaction that
  is rolled back).

No worker runs: the messages to observed names wait in the dispatch queue, which is purged at the end.
"""

import functools
import gc
import time
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction
from django.test.utils import override_settings

from benchmarks.bench import _vacuum, percentiles_us
from observers_app import manager
from observers_app.models import Observer
from observers_app.publishing import announce, presence, view
from tests.conftest import start_client_process, wait_ready
from tests.worker_process import purge_task_queue

CALLBACK = "observers.bench.stamp"
GLOBS = 10_000
ROUNDS = 3
MILLION = 1_000_000


def run(*, calls: int, progress: Callable[[str], None]) -> dict[str, Any]:
    calls = max(calls, 5000)
    results: dict[str, Any] = {}
    prefix = f"bench:presence:{uuid.uuid4().hex[:8]}"
    Observer.objects.filter(var_id__startswith="session:", is_glob=True).delete()
    manager.add_observers([f"session:{n}:*" for n in range(GLOBS)], CALLBACK, glob=True)
    observed = f"{prefix}:observed"
    manager.add_observer(observed, CALLBACK)
    other = start_client_process("distinct", f"{prefix}:other", "0")
    try:
        wait_ready(other)  # another process that holds a view, as a web or worker process would
        _loaded_view()
        progress(f"notify_observers: {calls} distinct unobserved names against the cached observed one")
        results["notify"] = _notify_rounds(prefix, observed, calls=calls)
        progress("add_observer and remove_observer, one at a time, two views registered")
        results["add"] = _adds(prefix, calls=min(calls, 2000))
        progress("10,000 add_observer calls one after another")
        started = time.perf_counter()
        for i in range(10_000):
            manager.add_observer(f"{prefix}:many:{i}", CALLBACK)
        results["add_10000_in_a_row_s"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        _timed(functools.partial(_bare_insert, f"{prefix}:bare-many"), 10_000)
        results["floor_bare_insert_10000_in_a_row_s"] = round(time.perf_counter() - started, 2)
        _stop(other)
        view.stop()
        _vacuum()
        progress("add_observer with no view registered")
        results["add"]["views_then"] = len(announce.live_views())
        results["add"]["add_fresh_no_view"] = _ms(
            _timed(lambda i: manager.add_observer(f"{prefix}:alone:{i}", CALLBACK), min(calls, 2000))
        )
        started = time.perf_counter()
        _loaded_view()
        results["view_start_s"] = round(time.perf_counter() - started, 3)
    finally:
        _stop(other)
        Observer.objects.filter(var_id__startswith=prefix).delete()
        Observer.objects.filter(var_id__startswith="session:", is_glob=True).delete()
        purge_task_queue()
    progress(f"the view's memory and load time with {MILLION:,} observed names")
    results["view_million"] = _million(prefix)
    return results


def _stop(process: Any) -> None:
    if process.poll() is None:
        process.stdin.write("go\n")
        process.stdin.flush()
        process.wait(timeout=30)


def _loaded_view() -> view.View:
    own = view.current()
    assert own is not None, "views are off (OBSERVERS_PRESENCE_VIEW, PostgreSQL)"
    deadline = time.monotonic() + 30
    while own.answer("anything") is None:
        assert time.monotonic() < deadline, "the view did not load"
        time.sleep(0.01)
    return own


def _timed(call: Callable[[int], object], count: int) -> list[float]:
    samples = []
    for i in range(count):
        started = time.perf_counter()
        call(i)
        samples.append(time.perf_counter() - started)
    return samples


def _notify_each(prefix: str) -> Callable[[int], Any]:
    """A notify to the name ``<prefix>:<i>`` for each i: a new name every call."""
    return lambda i: manager.notify_observers(f"{prefix}:{i}", 0, 1)


def _notify_rounds(prefix: str, observed: str, *, calls: int) -> dict[str, Any]:
    """ROUNDS interleaved rounds; each round's distinct names are new. The median round's figures."""
    rounds: dict[str, list[dict[str, float]]] = {"observed_cached": [], "distinct_unobserved": []}
    database: list[dict[str, float]] = []
    for r in range(ROUNDS):
        presence.has_observers(observed)
        rounds["observed_cached"].append(
            percentiles_us(_timed(lambda i: manager.notify_observers(observed, i, i + 1), calls))
        )
        names = f"{prefix}:{r}"
        rounds["distinct_unobserved"].append(percentiles_us(_timed(_notify_each(names), calls)))
        with override_settings(OBSERVERS_PRESENCE_VIEW=False, OBSERVERS_ABSENCE_TTL=0.25):
            database.append(percentiles_us(_timed(_notify_each(f"{names}:db"), calls // 5)))
    result: dict[str, Any] = {key: _median(values) for key, values in rounds.items()}
    result["distinct_unobserved_views_off"] = _median(database)
    result["p99_distinct_over_observed"] = [
        round(d["p99_us"] / o["p99_us"], 2)
        for d, o in zip(rounds["distinct_unobserved"], rounds["observed_cached"], strict=True)
    ]
    return result


def _median(values: list[dict[str, float]]) -> dict[str, float]:
    ordered = sorted(values, key=lambda value: value["p99_us"])
    return {**ordered[len(ordered) // 2], "lowest_p99_us": ordered[0]["p99_us"]}


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(ordered[len(ordered) // 2] * 1e3, 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99)] * 1e3, 3),
        "max_ms": round(ordered[-1] * 1e3, 3),
    }


def _adds(prefix: str, *, calls: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    results["views"] = len(announce.live_views())
    results["floor_bare_insert"] = _ms(_timed(functools.partial(_bare_insert, f"{prefix}:bare"), calls))
    results["learn_time"] = _ms(_timed(lambda i: announce.announce([f"{prefix}:learn:{i}"], []), calls))
    refs: list[tuple[str, uuid.UUID]] = []

    def add_fresh(i: int) -> None:
        name = f"{prefix}:fresh:{i}"
        refs.append((name, manager.add_observer(name, CALLBACK)))

    results["add_fresh"] = _ms(_timed(add_fresh, calls))
    results["add_already_observed"] = _ms(_timed(lambda i: manager.add_observer(refs[i][0], CALLBACK), calls))
    notified = [f"{prefix}:notified:{i}" for i in range(calls)]
    for name in notified:
        manager.notify_observers(name, 0, 1)
    results["add_just_notified"] = _ms(_timed(lambda i: manager.add_observer(notified[i], CALLBACK), calls))
    results["remove"] = _ms(_timed(lambda i: manager.remove_observer(*refs[i]), calls))
    return results


def _bare_insert(prefix: str, i: int) -> None:
    """One observer row by a bare INSERT through Django's cursor (autocommit): the floor under an add."""
    table = connection.ops.quote_name(Observer._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (id, var_id, is_glob, callback, created_at, failures, last_error, "  # noqa: S608
            "\"coalesce\") VALUES (%s, %s, false, %s, now(), 0, '', false)",
            [uuid.uuid4(), f"{prefix}:{i}", CALLBACK],
        )


def _million(prefix: str) -> dict[str, Any]:
    """Load the view's names as a starting view does, with MILLION more names observed (in a
    transaction rolled back afterwards, so the rows are never committed)."""
    table = connection.ops.quote_name(Observer._meta.db_table)
    results: dict[str, Any] = {}
    with transaction.atomic():
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (id, var_id, is_glob, callback, created_at, failures, last_error, "  # noqa: S608
                "\"coalesce\") SELECT gen_random_uuid(), %s || ':' || n, false, %s, now(), 0, '', false "
                "FROM generate_series(1, %s) n",
                [f"{prefix}:million", CALLBACK, MILLION],
            )
        results["insert_s"] = round(time.perf_counter() - started, 2)
        gc.collect()
        tracemalloc.start()
        started = time.perf_counter()
        names = view.load_names()
        results["load_s"] = round(time.perf_counter() - started, 2)
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        results["names"] = len(names)
        results["held_mb"] = round(current / 2**20, 1)
        results["peak_mb"] = round(peak / 2**20, 1)
        results["array_mb"] = round(names.hashes.itemsize * len(names.hashes) / 2**20, 1)
        started = time.perf_counter()
        for i in range(100_000):
            names.observes(f"nobody:{i}")
        results["lookup_us"] = round((time.perf_counter() - started) / 100_000 * 1e6, 2)
        transaction.set_rollback(True)
    return results

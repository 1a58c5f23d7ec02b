"""The async API: how long the event loop stalls while 1,000 ``anotify_observers`` run, against the same
loop with nothing else to do, and what one call costs on the event loop (the presence cache answers)
against on Django's sync thread.

The stall is the longest gap between two turns of a watcher coroutine that does nothing but
``await asyncio.sleep(0)`` (``tests/loop_watch.py``): on a plain loop it is the machine's own noise
(the scheduler, the collector); a call that blocked the loop on the database or the broker would add
its round trip.
"""

import asyncio
import functools
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async

from benchmarks.bench import percentiles_us, set_observers
from observers_app import manager
from observers_app.publishing import buffer, notify, presence
from tests.loop_watch import watched
from tests.worker_process import purge_task_queue

OBSERVED = [f"bench:async:observed:{n}" for n in range(50)]
UNOBSERVED = [f"bench:async:unobserved:{n}" for n in range(50)]
# Observed and unobserved names in turn: the unobserved ones' cached "no" lasts OBSERVERS_ABSENCE_TTL,
# so some calls find it expired and ask the database (on the sync thread), as they would in production.
NAMES = [name for pair in zip(OBSERVED, UNOBSERVED, strict=True) for name in pair]

Notify = Callable[..., Awaitable[str | None]]


async def _watched(work: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    _, wall, gaps = await watched(work)
    return {
        "wall_ms": round(wall * 1000, 1),
        "longest_stall_ms": round(max(gaps) * 1000, 2),
        "p99_stall_us": percentiles_us(gaps)["p99_us"],
        "loop_turns": len(gaps),
    }


def _one_by_one(call: Notify, calls: int) -> Callable[[], Awaitable[None]]:
    """One coroutine awaiting each call in turn, as a view notifying several variables would."""

    async def work() -> None:
        for i in range(calls):
            await call(NAMES[i % len(NAMES)], i, i + 1, {"bench": True})

    return work


def _all_at_once(call: Callable[..., Awaitable[Any]], calls: int) -> Callable[[], Awaitable[Any]]:
    """Every call its own task, all started together (``asyncio.gather``)."""

    async def work() -> Any:
        return await asyncio.gather(*(call(NAMES[i % len(NAMES)], i, i + 1, {}) for i in range(calls)))

    return work


async def _sleep_zero(*args: Any) -> None:
    await asyncio.sleep(0)


async def _idle(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def _stalls(calls: int, rounds: int, progress: Callable[[str], None]) -> dict[str, Any]:
    on_thread = notify._notify_on_sync_thread
    cases: dict[str, Callable[[], Callable[[], Awaitable[Any]]]] = {
        "one by one: anotify_observers": lambda: _one_by_one(manager.anotify_observers, calls),
        "one by one: every call on the sync thread": lambda: _one_by_one(on_thread, calls),
        "all at once: anotify_observers": lambda: _all_at_once(manager.anotify_observers, calls),
        "all at once: every call on the sync thread": lambda: _all_at_once(on_thread, calls),
        "all at once: asyncio.sleep(0) tasks": lambda: _all_at_once(_sleep_zero, calls),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in ["plain loop", *cases]}
    for round_ in range(rounds):
        progress(f"loop stalls, round {round_ + 1} of {rounds}")
        longest = 0.0
        for name, work in cases.items():
            runs[name].append(await _watched(work()))
            longest = max(longest, runs[name][-1]["wall_ms"] / 1000)
            await _drain()
        # The plain loop for as long as the slowest case took: the same time to meet the machine's noise.
        runs["plain loop"].append(await _watched(functools.partial(_idle, longest)))
    return {name: _median_run(samples) for name, samples in runs.items()}


def _median_run(samples: list[dict[str, float]]) -> dict[str, Any]:
    """The median of the rounds for each figure, and every round's longest stall or p99."""
    medians: dict[str, Any] = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
    for key in ("longest_stall_ms", "p99_us"):
        if key in samples[0]:
            medians[f"{key}_per_round"] = [sample[key] for sample in samples]
    return medians


async def _drain() -> None:
    """The send buffer emptied between cases: no case publishes the one before's messages."""
    await buffer.aflush(60)


async def _per_call(calls: int, rounds: int) -> dict[str, Any]:
    """One observed variable whose presence is cached, each call timed: on the loop, on the sync
    thread, the sync notify_observers called on Django's sync thread (the floor), and a bare
    ``await asyncio.sleep(0)`` (the loop's own turn), in interleaved rounds (the median round)."""
    var_id = OBSERVED[0]
    assert presence.cached_answer(var_id), "the variable's presence is not cached"
    cases: dict[str, Callable[[], Awaitable[dict[str, float]]]] = {
        "anotify_observers on the event loop (presence cached)": functools.partial(
            _time_awaits, manager.anotify_observers, var_id, calls
        ),
        "anotify_observers on the sync thread": functools.partial(
            _time_awaits, notify._notify_on_sync_thread, var_id, calls
        ),
        "notify_observers (sync, the floor)": functools.partial(sync_to_async(_time_calls), var_id, calls),
        "await asyncio.sleep(0) alone": functools.partial(_time_awaits, _sleep_zero, var_id, calls),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, timed in cases.items():
            runs[name].append(await timed())
            await _drain()
    return {name: _median_run(samples) for name, samples in runs.items()}


async def _time_awaits(call: Callable[..., Awaitable[Any]], var_id: str, calls: int) -> dict[str, float]:
    samples = []
    for i in range(calls):
        started = time.perf_counter()
        await call(var_id, i, i + 1, {"bench": True})
        samples.append(time.perf_counter() - started)
    return percentiles_us(samples) | {"mean_us": round(statistics.fmean(samples) * 1e6, 1)}


def _time_calls(var_id: str, calls: int) -> dict[str, float]:
    samples = []
    for i in range(calls):
        started = time.perf_counter()
        manager.notify_observers(var_id, i, i + 1, {"bench": True})
        samples.append(time.perf_counter() - started)
    return percentiles_us(samples) | {"mean_us": round(statistics.fmean(samples) * 1e6, 1)}


def _warm() -> None:
    """Every name's presence cached, and the sync thread's connection open."""
    for name in NAMES:
        manager.notify_observers(name, 0, 1)
    buffer.flush(60)


async def _run(calls: int, rounds: int, progress: Callable[[str], None]) -> dict[str, Any]:
    await sync_to_async(_warm)()
    progress(f"cost per call, {calls} calls each way")
    per_call = await _per_call(calls, rounds)
    await sync_to_async(_warm)()
    stalls = await _stalls(calls, rounds, progress)
    return {"calls": calls, "rounds": rounds, "per_call": per_call, "stalls": stalls}


def run(*, calls: int, rounds: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """No worker runs (the caller's figures alone); the queue is purged before and after."""
    purge_task_queue()
    for var_id in OBSERVED:
        set_observers(var_id, 1)
    try:
        return asyncio.run(_run(calls, rounds, progress))
    finally:
        for var_id in OBSERVED:
            set_observers(var_id, 0)
        purge_task_queue()

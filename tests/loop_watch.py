"""How long an event loop stalls: a watcher coroutine that only yields (``await asyncio.sleep(0)``)
records the gap between its turns while other work runs on the same loop. Used by the async API's
tests and its benchmark (``observers_bench --async-api``)."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def loop_gaps(done: asyncio.Event) -> list[float]:
    """The seconds between the watcher's turns, until ``done`` is set."""
    gaps = []
    last = time.perf_counter()
    while not done.is_set():
        await asyncio.sleep(0)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    return gaps


async def watched(work: Callable[[], Awaitable[Any]]) -> tuple[Any, float, list[float]]:
    """Run ``work()`` on this loop beside the watcher; returns its result, its wall time and the
    watcher's gaps (their ``max`` is the loop's longest stall meanwhile)."""
    done = asyncio.Event()
    watcher = asyncio.create_task(loop_gaps(done))
    await asyncio.sleep(0)  # the watcher's first turn
    started = time.perf_counter()
    try:
        result = await work()
    finally:
        wall = time.perf_counter() - started
        done.set()
        gaps = await watcher
    return result, wall, gaps

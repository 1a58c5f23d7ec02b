"""The streams' garbage collection policy (pure logic; it freezes and unfreezes this process's collector)."""

import gc
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from observers_app.streams.gc_policy import RECLAIM_AFTER_S, RECLAIM_MIN_CLOSED, GcPolicy


class Node:
    pass


@pytest.fixture
def collector() -> Iterator[GcPolicy]:
    yield GcPolicy()
    gc.unfreeze()


def test_what_streams_hold_is_frozen_and_a_cycle_they_leave_is_reclaimed(collector: GcPolicy):
    held = Node()
    collector.opened()
    collector.tick(open_streams=1)
    assert gc.get_freeze_count() > 0
    held.cycle = held  # type: ignore[attr-defined]
    gone = weakref.ref(held)
    del held
    gc.collect()
    assert gone() is not None, "a frozen object is left out of full collections"
    for _ in range(RECLAIM_MIN_CLOSED):
        collector.closed()
    collector.tick(open_streams=1)
    assert gone() is None
    assert gc.get_freeze_count() > 0, "what survives is frozen again"


def test_a_reclaim_is_due_after_a_quarter_of_the_open_streams_closed_or_after_a_while(collector: GcPolicy):
    now = collector.last_reclaim
    assert not collector.reclaim_due(10_000, now + RECLAIM_AFTER_S), "nothing changed since"
    for _ in range(RECLAIM_MIN_CLOSED):
        collector.closed()
    assert collector.reclaim_due(10, now)
    assert not collector.reclaim_due(10_000, now)
    for _ in range(2_500 - RECLAIM_MIN_CLOSED):
        collector.closed()
    assert collector.reclaim_due(10_000, now)
    collector.reclaim()
    collector.opened()
    collector.tick(open_streams=1)
    assert not collector.reclaim_due(1, collector.last_reclaim + RECLAIM_AFTER_S - 1)
    assert collector.reclaim_due(1, collector.last_reclaim + RECLAIM_AFTER_S + 0.001)  # float sums round


def test_a_host_that_froze_objects_or_disabled_the_collector_keeps_its_choice(monkeypatch):
    # The freeze count alone cannot tell: a frozen object another thread frees leaves it (the hub's
    # threads run in this process), so the calls to the collector are recorded too.
    calls: list[str] = []

    def recorded(name: str) -> Callable[..., Any]:
        real = getattr(gc, name)

        def call(*args: Any) -> Any:
            calls.append(name)
            return real(*args)

        return call

    for name in ("freeze", "unfreeze", "collect"):
        monkeypatch.setattr(gc, name, recorded(name))
    gc.freeze()
    try:
        host_froze = GcPolicy()
        frozen = gc.get_freeze_count()
        host_froze.opened()
        for _ in range(RECLAIM_MIN_CLOSED):
            host_froze.closed()
        host_froze.tick(open_streams=1)
        assert calls == ["freeze"], "neither unfrozen nor frozen further, nor collected"
        assert 0 < gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()

    disabled = GcPolicy()
    disabled.opened()
    calls.clear()
    gc.disable()
    try:
        disabled.tick(open_streams=1)
    finally:
        gc.enable()
    assert calls == [], "nothing frozen or collected"

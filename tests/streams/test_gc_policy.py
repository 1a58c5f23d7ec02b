"""The streams' garbage collection policy (pure logic; it freezes and unfreezes this process's collector)."""

import gc
import weakref
from collections.abc import Iterator

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


def test_a_host_that_froze_objects_or_disabled_the_collector_keeps_its_choice():
    gc.freeze()
    try:
        host_froze = GcPolicy()
        frozen = gc.get_freeze_count()
        host_froze.opened()
        for _ in range(RECLAIM_MIN_CLOSED):
            host_froze.closed()
        host_froze.tick(open_streams=1)
        assert gc.get_freeze_count() == frozen, "neither unfrozen nor frozen further"
    finally:
        gc.unfreeze()

    disabled = GcPolicy()
    disabled.opened()
    before = gc.get_freeze_count()
    gc.disable()
    try:
        disabled.tick(open_streams=1)
    finally:
        gc.enable()
    assert gc.get_freeze_count() == before, "nothing frozen"

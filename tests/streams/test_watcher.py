"""A stream's buffer, its snapshot coverage and its duplicate check (pure logic, no server)."""

import asyncio

import pytest

from observers_app.streams import messages
from observers_app.streams.messages import StreamEvent
from observers_app.streams.resume import Positions
from observers_app.streams.watcher import SLOW_CLIENT, Watcher


def change(var_id: str, seq: int, *, version: int | None = None, notification_id: str = "") -> StreamEvent:
    metadata = {"seq": seq, "epoch": "e1", **({"version": version} if version is not None else {})}
    return StreamEvent(
        var_id=var_id,
        seq=seq,
        notification_id=notification_id or f"{var_id}/{seq}",
        data={"var_id": var_id, "old_value": seq - 1, "new_value": seq, "metadata": metadata},
    )


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()


def test_the_snapshot_drops_buffered_changes_it_already_shows(loop):
    watcher = Watcher(["session:1:x", "price"], buffer_size=10)
    for seq in (3, 4, 5):
        watcher.offer(change("session:1:x", seq, version=seq))
    watcher.offer(change("price", 8))
    first = watcher.take_snapshot(
        [
            messages.snapshot("session:1:x", 4, seq=3, version=4),  # numbered late: version decides
            messages.snapshot("price", None, seq=8, version=None, absent=True),
        ]
    )
    # price shows nothing: its change 8, numbered before the snapshot was read, is sent all the same.
    assert [(e.var_id, e.seq) for e in first] == [("session:1:x", 3), ("session:1:x", 5), ("price", 8)]
    assert first[0].data["metadata"]["snapshot"] is True
    watcher.offer(change("price", 9))
    assert [e.seq for e in watcher.pending.values()] == [9]


def test_a_second_copy_of_a_notification_is_dropped_where_names_overlap(loop):
    watcher = Watcher(["session:1:x", "session:1:*"], buffer_size=10)
    watcher.take_snapshot([])
    watcher.offer(change("session:1:x", 1, notification_id="n1"))
    watcher.offer(change("session:1:x", 1, notification_id="n1"))
    assert len(watcher.pending) == 1


def test_past_the_buffer_the_latest_per_variable_then_a_close(loop):
    watcher = Watcher(["v:*"], buffer_size=3)
    watcher.take_snapshot([])
    for seq in range(1, 4):
        watcher.offer(change("v:a", seq))
    watcher.offer(change("v:b", 1))
    watcher.offer(change("v:b", 2))
    waiting = list(watcher.pending.values())
    assert [(e.var_id, e.seq) for e in waiting] == [("v:a", 1), ("v:a", 2), ("v:a", 3), ("v:b", 2)]
    assert waiting[-1].data["old_value"] == 0 and waiting[-1].data["coalesced"] == 2
    assert watcher.coalesced == 2
    for n in range(5):
        watcher.offer(change(f"v:c{n}", 1))
    assert watcher.closed_reason == SLOW_CLIENT
    assert not watcher.pending


def test_drain_sends_everything_waiting_in_one_chunk_and_heartbeats_when_idle(loop):
    watcher = Watcher(["a"], buffer_size=10)
    watcher.positions = Positions(single=True, started=None)
    watcher.take_snapshot([])
    watcher.offer(change("a", 1))
    watcher.offer(change("a", 2))
    chunk = watcher.drain()
    assert chunk.count(b"event: a\n") == 2 and chunk.startswith(b"id: e1:1\n") and b"id: e1:2\n" in chunk
    watcher.heartbeat()
    assert watcher.drain() == messages.HEARTBEAT
    assert watcher.drain() == b""


def test_a_name_with_a_line_break_is_sent_without_an_event_line():
    assert b"event:" not in messages.to_wire("a\nb", 1, {"x": 1})


def test_nothing_coalesces_across_the_snapshot(loop):
    watcher = Watcher(["v"], buffer_size=2)
    for seq in range(1, 6):
        watcher.offer(change("v", seq))
    first = watcher.take_snapshot([messages.snapshot("v", 3, seq=3, version=None)])
    assert [(e.seq, e.data["old_value"]) for e in first] == [(3, None), (4, 3), (5, 4)]
    for seq in range(6, 40):
        watcher.offer(change("v", seq))
    assert watcher.closed_reason is None


def test_a_model_fields_change_numbered_after_its_snapshot_read_is_not_sent_twice(loop):
    # The row committed 7, the snapshot read it with seq 5; the change to 7 was numbered 6 after.
    watcher = Watcher(["shop.item:1:price"], buffer_size=10)
    watcher.take_snapshot([messages.snapshot("shop.item:1:price", 7, seq=5, version=None)])
    racing = change("shop.item:1:price", 6)
    racing.data.update(old_value=6, new_value=7)
    watcher.offer(racing)
    assert watcher.pending == {}
    watcher.offer(change("shop.item:1:price", 8))  # 7 -> 8: the next one is sent
    assert [e.seq for e in watcher.pending.values()] == [8]


def test_a_model_fields_next_change_from_the_shown_value_is_sent(loop):
    watcher = Watcher(["shop.item:1:price"], buffer_size=10)
    watcher.take_snapshot([messages.snapshot("shop.item:1:price", 5, seq=5, version=None)])
    watcher.offer(change("shop.item:1:price", 6))  # 5 -> 6
    back = change("shop.item:1:price", 7)
    back.data.update(old_value=6, new_value=5)  # back to the shown value: a change of its own
    watcher.offer(back)
    assert [e.seq for e in watcher.pending.values()] == [6, 7]


def test_a_buffered_change_the_snapshot_shows_is_dropped_in_seq_order(loop):
    watcher = Watcher(["shop.item:1:price"], buffer_size=10)
    later, racing = change("shop.item:1:price", 7), change("shop.item:1:price", 6)
    later.data.update(old_value=7, new_value=True)  # 1 -> True would be a change: JSON compares
    racing.data.update(old_value=6, new_value=7)
    watcher.offer(later)
    watcher.offer(racing)
    first = watcher.take_snapshot([messages.snapshot("shop.item:1:price", 7, seq=5, version=None)])
    assert [(e.seq, e.data["new_value"]) for e in first] == [(5, 7), (7, True)]


def test_a_resume_sends_the_missed_changes_then_the_buffered_ones_past_them_once(loop):
    watcher = Watcher(["a*"], buffer_size=10)
    for seq in (3, 4, 5):  # live, while the history was read
        watcher.offer(change("a1", seq))
    watcher.offer(change("a2", 1))
    positions = Positions(single=False, started=None, marks={"a1": ("e1", 1), "a2": ("e1", 1)})
    first = watcher.take_resumed([change("a1", 2), change("a1", 3)], positions)
    assert [(e.var_id, e.seq) for e in first] == [("a1", 2), ("a1", 3), ("a1", 4), ("a1", 5)]
    watcher.offer(change("a1", 5))  # a late copy
    watcher.offer(change("a2", 2))
    assert [(e.var_id, e.seq) for e in watcher.pending.values()] == [("a2", 2)]

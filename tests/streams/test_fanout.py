"""The process's fan-out handing notifications to its streams (pure logic: no broker, no database)."""

import asyncio

from observers_app.streams.fanout import StreamFanout, _Subscription
from observers_app.streams.watcher import Watcher


def notification(seq: int, notification_id: str) -> dict:
    return {
        "pattern": "price",
        "var_id": "price",
        "old_value": seq - 1,
        "new_value": seq,
        "metadata": {"seq": seq, "notification_id": notification_id, "observer_ref": "x"},
    }


def test_a_notification_forwarded_twice_reaches_a_stream_once():
    loop = asyncio.new_event_loop()
    try:
        fanout = StreamFanout(loop)
        ready = loop.create_future()
        subscription = fanout.subscriptions["price"] = _Subscription("price", ready, loop)
        watcher = Watcher(["price"], buffer_size=10)
        watcher.take_snapshot([])
        subscription.watchers.add(watcher)
        # Two observers of the name for a moment (one re-added while the last was being removed).
        for message in (notification(1, "n1"), notification(1, "n1"), notification(2, "n2")):
            fanout.deliver(message)
        assert [event.seq for event in watcher.pending.values()] == [1, 2]
        assert "observer_ref" not in watcher.pending[0].data["metadata"]
    finally:
        fanout.registrar.shutdown()
        fanout.readers.shutdown()
        loop.close()

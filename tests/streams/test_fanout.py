"""The process's fan-out handing notifications to its streams (pure logic: no broker, no database)."""

import asyncio

import pytest

from observers_app.streams import fanout as fanout_module
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


def test_a_client_gone_while_the_fanout_starts_does_not_start_a_second_one(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(fanout_module, "_fanout", None)
    monkeypatch.setattr(fanout_module, "_starting", None)
    starts: list[asyncio.Event] = []

    async def start() -> StreamFanout:
        starts.append(release := asyncio.Event())
        await release.wait()  # the consumer connecting to the broker
        return StreamFanout.__new__(StreamFanout)

    monkeypatch.setattr(fanout_module, "_start", start)

    async def scenario() -> None:
        first = asyncio.ensure_future(fanout_module.get_fanout())
        await asyncio.sleep(0.01)
        first.cancel()  # its client left: Django cancels the view
        await asyncio.gather(first, return_exceptions=True)
        second = asyncio.ensure_future(fanout_module.get_fanout())
        await asyncio.sleep(0.01)
        for release in starts:
            release.set()
        fanout = await asyncio.wait_for(second, timeout=5)
        assert await fanout_module.get_fanout() is fanout
        assert len(starts) == 1

    asyncio.run(scenario())


def test_a_failed_start_is_tried_again_by_the_next_stream(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(fanout_module, "_fanout", None)
    monkeypatch.setattr(fanout_module, "_starting", None)
    attempts: list[int] = []

    async def start() -> StreamFanout:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("the streams' queue consumer could not reach the broker")
        return StreamFanout.__new__(StreamFanout)

    monkeypatch.setattr(fanout_module, "_start", start)

    async def scenario() -> None:
        with pytest.raises(RuntimeError):
            await fanout_module.get_fanout()
        fanout = await fanout_module.get_fanout()
        assert await fanout_module.get_fanout() is fanout and len(attempts) == 2

    asyncio.run(scenario())

"""Transient faults held in the worker's main process: the waits, the prefetch, the requeue (pure logic,
a stand-in consumer; tests/faults holds them against a broker and a database that go away)."""

from dataclasses import dataclass, field
from typing import Any

import pytest

from observers_app.worker import retrying


@dataclass
class Timer:
    entries: list[tuple[float, Any, tuple[Any, ...]]] = field(default_factory=list)

    def call_after(self, secs: float, fun: Any, args: tuple[Any, ...] = ()) -> None:
        self.entries.append((secs, fun, args))

    def fire(self) -> None:
        entries, self.entries = self.entries, []
        for _, fun, args in entries:
            fun(*args)


@dataclass
class Qos:
    value: int = 0

    def increment_eventually(self) -> None:
        self.value += 1

    def decrement_eventually(self) -> None:
        self.value -= 1


@dataclass
class Request:
    id: str
    requeued: int = 0

    def reject(self, requeue: bool = False) -> None:
        assert requeue
        self.requeued += 1


@pytest.fixture
def consumer(monkeypatch: pytest.MonkeyPatch) -> Any:
    worker = type("Consumer", (), {"timer": Timer(), "qos": Qos()})()
    monkeypatch.setattr(retrying, "_consumer", worker)
    monkeypatch.setattr(retrying, "_extra_prefetch", 0)
    monkeypatch.setattr(retrying.counters, "increment_later", lambda counts: None)
    return worker


def test_a_held_message_waits_longer_each_time_up_to_the_cap_then_is_requeued(consumer):
    request = Request("message-1")
    waits = []
    for _ in range(7):
        retrying.requeue_later(request)
        assert consumer.qos.value == 1  # the worker takes another message meanwhile
        waits.append(consumer.timer.entries[-1][0])
        consumer.timer.fire()
        assert consumer.qos.value == 0
    assert request.requeued == 7
    caps = [1, 2, 4, 8, 10, 10, 10]
    assert all(0.8 * cap <= wait <= cap for wait, cap in zip(waits, caps, strict=True))

    retrying.forget(request.id)  # it ran: its next fault starts afresh
    retrying.requeue_later(request)
    assert consumer.timer.entries[-1][0] <= 1


def test_held_messages_raise_the_prefetch_only_up_to_a_bound(consumer, monkeypatch):
    monkeypatch.setattr(retrying, "EXTRA_PREFETCH_MAX", 3)
    for n in range(5):
        retrying.requeue_later(Request(f"message-{n}"))
    assert consumer.qos.value == 3
    consumer.timer.fire()
    assert consumer.qos.value == 0

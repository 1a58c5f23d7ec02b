"""The caller's send buffer: published in order by its own thread, kept while the broker fails, bounded."""

import threading
import time
from typing import Any

import pytest

from observers_app import manager
from observers_app.exceptions import BrokerUnavailable
from observers_app.publishing import broker, buffer


def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def message(n: int) -> buffer._Message:
    return buffer._Message("observers.test", f"[{n}]", None)


def test_the_send_buffer_publishes_in_order_and_keeps_what_failed_ahead_of_what_came_since(monkeypatch):
    published: list[str] = []
    failing, more_put = threading.Event(), threading.Event()

    def flaky_publish(messages: list[tuple[str, str]], **kwargs: Any) -> None:
        for _, args_json in messages:
            if args_json == "[1]" and not failing.is_set():
                failing.set()
                more_put.wait(5)  # [3] and [4] arrive while [1] fails
                raise ConnectionError("broker unreachable")
            published.append(args_json)

    monkeypatch.setattr(broker, "publish_confirmed", flaky_publish)
    monkeypatch.setattr(buffer, "RETRY_S", 0.01)
    send_buffer = buffer._SendBuffer()
    for n in range(3):
        send_buffer.put(message(n))
    wait_until(failing.is_set)
    for n in (3, 4):
        send_buffer.put(message(n))
    more_put.set()

    assert send_buffer.flush(5)
    # A failed batch is sent again whole (some maybe twice: at-least-once), ahead of what came since.
    assert list(dict.fromkeys(published)) == [f"[{n}]" for n in range(5)]
    assert published[-4:] == ["[1]", "[2]", "[3]", "[4]"]


def test_a_publisher_thread_that_died_is_started_again(monkeypatch):
    published: list[str] = []
    monkeypatch.setattr(
        broker, "publish_confirmed", lambda messages, **kwargs: published.extend(m[1] for m in messages)
    )
    send_buffer = buffer._SendBuffer()
    send_buffer.put(message(0))
    assert send_buffer.flush(5)
    dead = threading.Thread(target=lambda: None)
    dead.start()
    dead.join()
    send_buffer.thread = dead  # as if it had died

    send_buffer.put(message(1))

    assert send_buffer.flush(5)
    assert published == ["[0]", "[1]"]


class StuckThenFailingOnce:
    """A broker that holds each publish until released, and fails the ``fail``-th one."""

    def __init__(self, fail: int) -> None:
        self.fail, self.calls = fail, 0
        self.release = threading.Event()
        self.published: list[str] = []

    def __call__(self, messages: list[tuple[str, str]], **kwargs: Any) -> None:
        if not messages:
            return
        self.calls += 1
        self.release.wait(5)
        self.release.clear()
        if self.calls == self.fail:
            raise BrokerUnavailable("the broker is away")
        self.published.extend(args_json[:8] for _, args_json in messages)


@pytest.mark.django_db(transaction=True)
def test_a_full_send_buffer_drops_its_oldest_and_counts_them_as_shed(monkeypatch):
    """The batch being sent is the oldest held: it is dropped first if it comes back unsent; what came
    since (the newest) keeps its place meanwhile."""
    broker_stub = StuckThenFailingOnce(fail=2)
    monkeypatch.setattr(broker, "publish_confirmed", broker_stub)
    monkeypatch.setattr(buffer, "BUFFER_MAX", 3)
    monkeypatch.setattr(buffer, "RETRY_S", 0.01)
    before = manager.get_stats()["notifications_shed"]
    send_buffer = buffer._SendBuffer()
    send_buffer.put(message(0))
    wait_until(lambda: send_buffer.sending == 1)
    for n in (1, 2, 3):
        send_buffer.put(message(n))
    broker_stub.release.set()  # [0] is sent; the thread takes [1], [2], [3], the second publish
    wait_until(lambda: send_buffer.sending == 3)
    for n in (4, 5, 6):
        send_buffer.put(message(n))
    assert list(send_buffer.messages) == [message(4), message(5), message(6)]  # the newest kept
    for _ in range(3):
        broker_stub.release.set()  # the second publish fails: [1], [2], [3] come back, the oldest
        time.sleep(0.05)

    assert send_buffer.flush(5)
    assert broker_stub.published == ["[0]", "[4]", "[5]", "[6]"]  # [1], [2], [3], the oldest, dropped
    wait_until(lambda: manager.get_stats()["notifications_shed"] == before + 3)


@pytest.mark.django_db(transaction=True)
def test_the_send_buffer_is_bounded_in_bytes_too(monkeypatch):
    """400 notifications of ~256 KB with the broker away held 100 MiB: the byte bound holds it."""
    broker_stub = StuckThenFailingOnce(fail=1)
    monkeypatch.setattr(broker, "publish_confirmed", broker_stub)
    monkeypatch.setattr(buffer, "RETRY_S", 0.01)
    before = manager.get_stats()["notifications_shed"]
    send_buffer = buffer._SendBuffer(max_bytes=1_000_000)
    big = [f'["{n:04d}","{"x" * 100_000}"]' for n in range(40)]
    send_buffer.put(buffer._Message("observers.test", big[0], None))
    wait_until(lambda: send_buffer.sending == 1)
    for args_json in big[1:]:
        send_buffer.put(buffer._Message("observers.test", args_json, None))
        assert send_buffer.held_bytes() <= 1_000_000 + len(big[0])  # what waits, besides the batch sent
    assert len(send_buffer.messages) == 9  # 1,000,000 bytes hold 9 of 100,016 bytes
    broker_stub.release.set()  # the first publish fails: big[0] comes back, the oldest, and is dropped
    for _ in range(3):
        time.sleep(0.05)
        broker_stub.release.set()

    assert send_buffer.flush(5)
    assert broker_stub.published == [message[:8] for message in big[-9:]]
    wait_until(lambda: manager.get_stats()["notifications_shed"] == before + 31)

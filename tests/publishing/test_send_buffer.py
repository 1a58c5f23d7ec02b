"""The caller's send buffer: published in order by its own thread, kept while the broker fails, bounded."""

import threading
import time
from typing import Any

import pytest

from observers_app import manager
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


@pytest.mark.django_db(transaction=True)
def test_a_full_send_buffer_drops_the_oldest_waiting_and_counts_them_as_shed(monkeypatch):
    release = threading.Event()
    published: list[str] = []

    def stuck_publish(messages: list[tuple[str, str]], **kwargs: Any) -> None:
        release.wait(5)  # the broker is slow: messages pile up behind this one
        published.extend(args_json for _, args_json in messages)

    monkeypatch.setattr(broker, "publish_confirmed", stuck_publish)
    monkeypatch.setattr(buffer, "BUFFER_MAX", 3)
    before = manager.get_stats()["notifications_shed"]
    send_buffer = buffer._SendBuffer()
    send_buffer.put(message(0))
    wait_until(lambda: send_buffer.sending == 1)  # the thread took [0] and is publishing it
    for n in range(1, 6):
        send_buffer.put(message(n))
    assert len(send_buffer.messages) + send_buffer.sending == 3  # bounded, the message being sent included
    release.set()

    assert send_buffer.flush(5)
    assert published == ["[0]", "[4]", "[5]"]  # [1], [2] and [3], the oldest waiting, were dropped
    wait_until(lambda: manager.get_stats()["notifications_shed"] == before + 3)


@pytest.mark.django_db(transaction=True)
def test_the_send_buffer_is_bounded_in_bytes_too(monkeypatch):
    """400 notifications of ~256 KB with the broker away held 100 MiB: the byte bound holds it."""
    release = threading.Event()
    published: list[str] = []

    def stuck_publish(messages: list[tuple[str, str]], **kwargs: Any) -> None:
        release.wait(5)
        published.extend(args_json[:8] for _, args_json in messages)

    monkeypatch.setattr(broker, "publish_confirmed", stuck_publish)
    before = manager.get_stats()["notifications_shed"]
    send_buffer = buffer._SendBuffer(max_bytes=1_000_000)
    big = [f'["{n:04d}","{"x" * 100_000}"]' for n in range(40)]
    send_buffer.put(buffer._Message("observers.test", big[0], None))
    wait_until(lambda: send_buffer.sending == 1)
    for args_json in big[1:]:
        send_buffer.put(buffer._Message("observers.test", args_json, None))
        assert send_buffer.held_bytes() <= 1_000_000
    assert len(send_buffer.messages) + send_buffer.sending == 9  # 1,000,000 bytes hold 9 of 100,016 bytes
    release.set()

    assert send_buffer.flush(5)
    assert published == [big[0][:8]] + [message[:8] for message in big[-8:]]
    wait_until(lambda: manager.get_stats()["notifications_shed"] == before + 31)

"""The caller's outbox: published in order by its own thread, kept while the broker fails, bounded."""

import threading
from typing import Any

import pytest

from observers_app import manager, publisher


def test_the_outbox_publishes_in_order_and_keeps_what_failed_until_the_broker_takes_it(monkeypatch):
    published: list[str] = []
    failures = iter([False, True, True, False, False, False])

    def flaky_publish(task_name: str, args_json: str, **kwargs: Any) -> str:
        if next(failures, False):
            raise ConnectionError("broker unreachable")
        published.append(args_json)
        return "id"

    monkeypatch.setattr(publisher, "publish_task", flaky_publish)
    monkeypatch.setattr(publisher, "RETRY_S", 0.01)
    outbox = publisher._Outbox()
    for n in range(5):
        outbox.put("observers.test", f"[{n}]")

    assert outbox.flush(5)
    assert published == [f"[{n}]" for n in range(5)]


@pytest.mark.django_db(transaction=True)
def test_a_full_outbox_drops_the_oldest_and_counts_them_as_shed(monkeypatch):
    release = threading.Event()
    published: list[str] = []

    def stuck_publish(task_name: str, args_json: str, **kwargs: Any) -> str:
        release.wait(5)  # the broker is slow: messages pile up behind this one
        published.append(args_json)
        return "id"

    monkeypatch.setattr(publisher, "publish_task", stuck_publish)
    monkeypatch.setattr(publisher, "OUTBOX_MAX", 3)
    before = manager.get_stats()["notifications_shed"]
    outbox = publisher._Outbox()
    outbox.put("observers.test", "[0]")
    while not outbox.sending:  # the thread has taken [0] and is publishing it
        threading.Event().wait(0.001)
    for n in range(1, 6):
        outbox.put("observers.test", f"[{n}]")
    release.set()

    assert outbox.flush(5)
    assert published == ["[0]", "[3]", "[4]", "[5]"]  # [1] and [2], the oldest waiting, were dropped
    assert manager.get_stats()["notifications_shed"] == before + 2

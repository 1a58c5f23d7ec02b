"""Degrading under load: a dispatch queue that sheds its oldest, a deliver queue that refuses, caps."""

import json
import threading
from typing import Any

import pytest

from observers_app import conf, manager, wiring
from observers_app.exceptions import BrokerUnavailable, TooManyObservers
from observers_app.models import Observer, VariableState
from observers_app.publishing import backpressure, broker, buffer
from project.celery import app
from tests.conftest import wait_for
from tests.factories import unique_var
from tests.testapp.callbacks import record
from tests.testapp.models import Received

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_overflowing_dispatch_queue_sheds_the_oldest_and_counts_them(worker: str):
    queue = wiring.dispatch_queue().name
    limit = conf.queue_max_length()
    var = unique_var("flood")
    manager.add_observer(var, record)
    before = manager.get_stats()["notifications_shed"]
    replies = app.control.cancel_consumer(queue, reply=True, timeout=5, destination=[worker])
    assert replies, f"worker {worker} did not answer"
    try:
        wait_for(lambda: manager.get_stats()["queue_backlog"] == 0)
        for n in range(limit + 50):
            manager.notify_observers(var, n, n + 1)  # returns at once, whatever the backlog
        assert buffer.flush()
        wait_for(lambda: manager.get_stats()["queue_backlog"] == limit)
    finally:
        app.control.add_consumer(queue, reply=True, timeout=5, destination=[worker])
    backpressure.drain_shed()  # as the sweep does; the worker's ticker may have counted them already
    wait_for(lambda: manager.get_stats()["notifications_shed"] == before + 50)
    wait_for(lambda: Received.objects.filter(var_id=var).count() == limit, timeout=60)
    delivered = sorted(int(str(call.new_value)) for call in Received.objects.filter(var_id=var))
    assert delivered == list(range(51, limit + 51))  # the newest survive


def test_caps_per_variable_and_per_owner(settings):
    settings.OBSERVERS_MAX_PER_VARIABLE = 3
    settings.OBSERVERS_MAX_PER_OWNER = 2
    var = unique_var("capped")
    for _ in range(3):
        manager.add_observer(var, record)
    with pytest.raises(TooManyObservers, match="OBSERVERS_MAX_PER_VARIABLE=3"):
        manager.add_observer(var, record)
    assert manager.observer_count(var) == 3
    with manager.open_owner("ws", ttl_s=60) as lease:
        manager.add_observer(unique_var(), record, owner=lease)
        manager.add_observer(unique_var(), record, owner=lease)
        with pytest.raises(TooManyObservers, match="OBSERVERS_MAX_PER_OWNER=2"):
            manager.add_observer(unique_var(), record, owner=lease)


def test_bulk_add_counts_caps_and_is_all_or_nothing(settings):
    settings.OBSERVERS_MAX_PER_VARIABLE = 2
    settings.OBSERVERS_MAX_PER_OWNER = 3
    a, b = unique_var("bulk"), unique_var("bulk")
    added_before = manager.get_stats()["observers_added"]
    refs = manager.add_observers([a, b, a], record)
    assert len(set(refs)) == 3
    assert [Observer.objects.get(id=ref).var_id for ref in refs] == [a, b, a]
    assert (manager.observer_count(a), manager.observer_count(b)) == (2, 1)
    assert manager.get_stats()["observers_added"] == added_before + 3
    assert dict(VariableState.objects.filter(var_id__in=[a, b]).values_list("var_id", "observer_count")) == {
        a: 2,
        b: 1,
    }
    with pytest.raises(TooManyObservers, match="OBSERVERS_MAX_PER_VARIABLE=2"):
        manager.add_observers([b, unique_var(), a], record)
    assert (manager.observer_count(a), manager.observer_count(b)) == (2, 1)
    assert VariableState.objects.get(var_id=a).observer_count == 2
    with manager.open_owner("ws", ttl_s=60) as lease:
        manager.add_observers([unique_var(), unique_var()], record, owner=lease)
        with pytest.raises(TooManyObservers, match="OBSERVERS_MAX_PER_OWNER=3"):
            manager.add_observers([unique_var(), unique_var()], record, owner=lease)
        assert Observer.objects.filter(owner_id=lease.id).count() == 2


def test_a_full_deliver_queue_refuses_pages_and_loses_none_it_took(settings):
    """Bounded in bytes: past the bound the broker refuses a page (the publisher confirm says so and the
    dispatch is redelivered later) instead of dropping one it already holds."""
    settings.OBSERVERS_QUEUE = unique_var("observers-test-bytes").replace(":", "-")
    settings.OBSERVERS_DELIVER_QUEUE_MAX_BYTES = 2_000
    page = json.dumps(["x" * 280])  # about the size of a deliver page's reference
    outcome: dict[str, object] = {}

    def publish_until_refused() -> None:  # a thread of its own: a new broker link, on the new queue
        accepted = 0
        try:
            for _ in range(50):
                broker.publish_confirmed([(wiring.DELIVER_TASK, page)])
                accepted += 1
        except BrokerUnavailable as exc:
            outcome["refused"] = exc
        outcome["accepted"] = accepted

    thread = threading.Thread(target=publish_until_refused)
    thread.start()
    thread.join(30)
    try:
        assert isinstance(outcome.get("refused"), BrokerUnavailable)
        accepted = outcome["accepted"]
        assert isinstance(accepted, int) and 0 < accepted < 50
        with app.connection_for_write() as connection:
            channel: Any = connection.default_channel
            declared = channel.queue_declare(wiring.deliver_queue().name, passive=True)
            assert declared.message_count == accepted  # every page it took is still there
    finally:
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            channel.queue_delete(wiring.deliver_queue().name)


def test_publishing_into_a_full_deliver_queue_says_which_messages_it_refused(settings):
    """Confirms settle message by message: the caller learns which the broker refused, and keeps those."""
    settings.OBSERVERS_QUEUE = unique_var("observers-test-refused").replace(":", "-")
    settings.OBSERVERS_DELIVER_QUEUE_MAX_BYTES = 2_000
    pages = [json.dumps([f"{n:03d}" + "x" * 280]) for n in range(50)]
    outcome: dict[str, BrokerUnavailable] = {}

    def publish() -> None:  # a thread of its own: a new broker link, on the new queue
        try:
            broker.publish_confirmed([(wiring.DELIVER_TASK, page) for page in pages])
        except BrokerUnavailable as exc:
            outcome["refused"] = exc

    thread = threading.Thread(target=publish)
    thread.start()
    thread.join(30)
    try:
        unsent = outcome["refused"].unsent
        assert unsent is not None and 0 < len(unsent) < 50
        held = set()
        with app.connection_for_write() as connection:
            channel: Any = connection.default_channel
            while (message := channel.basic_get(wiring.deliver_queue().name, no_ack=True)) is not None:
                held.add(int(json.loads(message.body)[0][0][:3]))
        assert held == set(range(50)) - set(unsent)
    finally:
        with app.connection_for_write() as connection:
            deleting: Any = connection.default_channel
            deleting.queue_delete(wiring.deliver_queue().name)

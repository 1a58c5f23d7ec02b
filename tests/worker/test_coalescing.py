"""Latest value wins: coalescing observers get fewer, newer values; ordered ones get every value."""

import itertools
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from observers_app import manager
from observers_app.models import Latest
from observers_app.worker import coalescing
from tests.conftest import wait_for
from tests.factories import unique_var
from tests.testapp.callbacks import record, record_json
from tests.testapp.models import Received

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


def test_fast_notifications_collapse_for_a_coalescing_observer_and_not_for_an_ordered_one():
    var = unique_var("ticker")
    ordered = manager.add_observer(var, record)
    latest = manager.add_observer(var, "tests.slow_record", coalesce=True)  # 50 ms a call
    before = manager.get_stats()["notifications_coalesced"]

    for n in range(40):
        manager.notify_observers(var, n, n + 1)

    wait_for(lambda: Received.objects.filter(var_id=var, observer_ref=ordered).count() == 40)
    wait_for(
        lambda: Received.objects.filter(var_id=var, observer_ref=latest, new_value=40).exists(), timeout=30
    )
    every = sorted(Received.objects.filter(observer_ref=ordered), key=lambda c: c.metadata["seq"])
    assert sorted(int(str(c.new_value)) for c in every) == list(range(1, 41))
    newest = every[-1].new_value  # the notification numbered last

    def last_delivered():
        calls = sorted(Received.objects.filter(observer_ref=latest), key=lambda c: c.metadata["seq"])
        return calls and calls[-1].metadata["seq"] == every[-1].metadata["seq"] and calls

    coalesced = wait_for(last_delivered, timeout=30)
    assert 1 <= len(coalesced) < 40
    assert coalesced[-1].new_value == newest
    for previous, current in itertools.pairwise(coalesced):
        assert current.old_value == previous.new_value  # old value: the last one it was given
        assert current.metadata["seq"] > previous.metadata["seq"]
    assert sum(c.metadata["coalesced"] for c in coalesced) <= 40 - len(coalesced)
    wait_for(lambda: manager.get_stats()["notifications_coalesced"] == before + 40 - len(coalesced))


def test_a_notification_older_than_the_last_delivered_is_never_delivered_after_it():
    var = unique_var("late")
    ref = manager.add_observer(var, record, coalesce=True)

    def offer(seq: int, old: int, new: int) -> None:
        if token := coalescing.offer(
            {
                "var_id": var,
                "old_value": old,
                "new_value": new,
                "metadata": None,
                "notification_id": f"n{seq}",
                "seq": seq,
                "notified_at": 0.0,
            }
        ):
            coalescing.deliver_waiting(var, [], token)

    offer(6, 5, 6)  # delivered here: no worker holds the lease
    offer(5, 4, 5)  # numbered earlier, arrived later: dropped, counted as collapsed
    offer(7, 6, 7)
    calls = sorted(Received.objects.filter(observer_ref=ref), key=lambda c: c.metadata["seq"])
    assert [(c.metadata["seq"], c.old_value, c.new_value) for c in calls] == [(6, 5, 6), (7, 6, 7)]
    assert calls[1].metadata["coalesced"] == 1
    assert Latest.objects.get(var_id=var).delivered_seq == 7


def test_a_value_whose_delivering_worker_died_is_delivered_by_the_sweep():
    var = unique_var("orphan")
    ref = manager.add_observer(var, record, coalesce=True)
    notification = {
        "var_id": var,
        "old_value": 1,
        "new_value": 2,
        "metadata": None,
        "notification_id": "n1",
        "seq": 1,
        "notified_at": 0.0,
    }
    token = coalescing.offer(notification)  # this process now holds the lease...
    assert token
    assert coalescing._take_waiting(var, token) is not None  # ...took the value, "died" before delivering it
    Latest.objects.filter(var_id=var).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )  # lease ran out

    assert manager.sweep()["coalescing_resumed"] == 1

    [call] = Received.objects.filter(observer_ref=ref)
    assert (call.old_value, call.new_value, call.metadata["seq"]) == (1, 2, 1)
    latest = Latest.objects.get(var_id=var)
    assert (latest.pending, latest.delivered_seq, latest.lease_until) == (None, 1, None)
    assert manager.sweep()["coalescing_resumed"] == 0  # nothing waits any more


def test_a_worker_whose_lease_was_taken_over_stops_and_records_nothing():
    var = unique_var("takeover")
    ref = manager.add_observer(var, record, coalesce=True)

    def notification(seq: int) -> dict[str, Any]:
        return {
            "var_id": var,
            "old_value": seq - 1,
            "new_value": seq,
            "metadata": None,
            "notification_id": f"n{seq}",
            "seq": seq,
            "notified_at": 0.0,
        }

    slow_token = coalescing.offer(notification(1))
    assert slow_token
    taken = coalescing._take_waiting(var, slow_token)  # a slow worker takes seq 1...
    assert taken is not None
    Latest.objects.filter(var_id=var).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert manager.sweep()["coalescing_resumed"] == 1  # ...its lease runs out: the sweep delivers seq 1
    token = coalescing.offer(notification(2))
    assert token
    coalescing.deliver_waiting(var, [], token)  # and another worker seq 2

    coalescing._mark_delivered(var, taken, slow_token)  # the slow worker finishing late changes nothing
    assert coalescing._take_waiting(var, slow_token) is None

    latest = Latest.objects.get(var_id=var)
    assert (latest.delivered_seq, latest.delivered_value) == (2, 2)
    calls = sorted(Received.objects.filter(observer_ref=ref), key=lambda c: c.metadata["seq"])
    assert [(c.old_value, c.new_value) for c in calls] == [(0, 1), (1, 2)]


def test_a_coalescing_observer_gets_values_exactly_as_notified():
    """Its mailbox holds the notification and the last value delivered: as text, not jsonb (which
    would read 6.0e16 back as an int and -0.0 as 0)."""
    var = unique_var("exact")
    ref = manager.add_observer(var, record_json, coalesce=True)

    manager.notify_observers(var, -0.0, 6.003101936092242e16)
    wait_for(lambda: Received.objects.filter(observer_ref=ref).exists())
    manager.notify_observers(var, 1.0, 1e300)  # its old value: the last one this observer was given

    def both() -> Any:
        received = Received.objects.filter(observer_ref=ref).order_by("received_at", "id")
        return len(received) == 2 and [(r.old_value, r.new_value) for r in received]

    assert wait_for(both) == [("-0.0", "6.003101936092242e+16"), ("6.003101936092242e+16", "1e+300")]

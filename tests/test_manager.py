"""The hub end to end: a real worker process, the real broker and the test database."""

import json
import os
import signal
import uuid
from datetime import datetime
from typing import Any

import pytest
from django.db import transaction

from observers_app import manager
from observers_app.exceptions import InvalidVariableId, NotSerializable, PayloadTooLarge, UnknownCallback
from observers_app.models import Observer, VariableState
from observers_app.worker import delivery
from tests import factories
from tests.conftest import wait_for
from tests.factories import make_observers, unique_var
from tests.testapp.callbacks import record
from tests.testapp.models import Received

NOT_A_STRING: Any = 42

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


def received(var_id: str) -> list[Received]:
    return list(Received.objects.filter(var_id=var_id).order_by("id"))


def seq_of(var_id: str) -> int:
    state = VariableState.objects.filter(var_id=var_id).first()
    return state.seq if state else 0


def test_add_notify_receive_remove():
    var = unique_var("price")
    ref = manager.add_observer(var, record)
    assert isinstance(ref, uuid.UUID)
    assert manager.observer_count(var) == 1

    notification_id = manager.notify_observers(var, 10, 11, {"source": "feed"})

    [call] = wait_for(lambda: received(var))
    assert (call.var_id, call.old_value, call.new_value) == (var, 10, 11)
    assert call.observer_ref == ref
    assert call.metadata["source"] == "feed"
    assert call.metadata["notification_id"] == notification_id
    assert call.metadata["seq"] == 1
    assert manager.remove_observer(var, ref) is True
    assert manager.observer_count(var) == 0
    assert manager.remove_observer(var, ref) is False


def test_callback_given_by_registered_name():
    var = unique_var()
    manager.add_observer(var, "tests.testapp.callbacks.record")
    manager.notify_observers(var, "a", "b")
    assert wait_for(lambda: received(var))[0].new_value == "b"


def test_ten_observers_each_called_once_and_each_notification_numbered_once():
    var = unique_var()
    refs = {manager.add_observer(var, record) for _ in range(10)}
    first = manager.notify_observers(var, 0, 1)
    second = manager.notify_observers(var, 1, 2)

    calls = wait_for(lambda: len(received(var)) == 20 and received(var))
    seqs = set()
    for notification_id in (first, second):
        batch = [c for c in calls if c.metadata["notification_id"] == notification_id]
        assert sorted(str(c.observer_ref) for c in batch) == sorted(str(r) for r in refs)
        [seq] = {c.metadata["seq"] for c in batch}
        seqs.add(seq)
    assert seqs == {1, 2}


def test_unchanged_value_sends_nothing():
    var = unique_var()
    manager.add_observer(var, record)
    assert manager.notify_observers(var, {"x": 1}, {"x": 1}) is None
    manager.notify_observers(var, 1, 2)

    wait_for(lambda: received(var))
    assert [c.new_value for c in received(var)] == [2]
    assert seq_of(var) == 1


def test_stats_grow_after_add_notify_remove():
    var = unique_var()
    before = manager.get_stats()
    ref = manager.add_observer(var, record)
    after_add = manager.get_stats()
    assert after_add["observers_added"] == before["observers_added"] + 1
    assert after_add["active_observers"] == before["active_observers"] + 1

    manager.notify_observers(var, 1, 2)
    wait_for(lambda: manager.get_stats()["notifications_sent"] == before["notifications_sent"] + 1)

    manager.remove_observer(var, ref)
    final = manager.get_stats()
    assert final["observers_removed"] == before["observers_removed"] + 1
    assert final["active_observers"] == before["active_observers"]
    assert final["uptime_ms"] >= 0
    assert set(final) >= {
        "observers_added",
        "observers_removed",
        "notifications_sent",
        "notifications_failed",
        "cleanup_runs",
        "active_observers",
        "monitored_processes",
        "uptime_ms",
    }


def test_one_raising_callback_among_100_does_not_stop_the_others():
    var = unique_var()
    good = set(make_observers(var, 99))
    [bad] = make_observers(var, 1, callback="tests.explode")
    failed_before = manager.get_stats()["notifications_failed"]

    manager.notify_observers(var, 1, 2)

    wait_for(lambda: len(received(var)) == 99)
    assert {c.observer_ref for c in received(var)} == good
    wait_for(lambda: Observer.objects.get(id=bad).failures == 1)
    assert "callback failed on purpose" in Observer.objects.get(id=bad).last_error
    assert manager.get_stats()["notifications_failed"] == failed_before + 1
    [entry] = [o for o in manager.inspect_variable(var)["observers"] if o["ref"] == bad]
    assert entry["failures"] == 1


def test_a_callback_over_its_time_limit_is_stopped_and_the_others_still_called():
    var = unique_var()
    [stalled] = make_observers(var, 1, callback="tests.stall")
    good = set(make_observers(var, 5))

    manager.notify_observers(var, 1, 2)

    wait_for(lambda: len(received(var)) == 5)
    assert {c.observer_ref for c in received(var)} == good
    observer = wait_for(lambda: Observer.objects.filter(id=stalled, failures=1).first())
    assert "CallbackTimeout" in observer.last_error


def test_notify_inside_a_transaction_is_sent_after_commit():
    var = unique_var()
    manager.add_observer(var, record)
    with transaction.atomic():
        manager.notify_observers(var, 1, 2)
        Observer.objects.filter(var_id=var).update(failures=0)  # any other work in the transaction
        assert seq_of(var) == 0
    assert wait_for(lambda: received(var))[0].new_value == 2


def test_notify_inside_a_rolled_back_transaction_is_never_sent():
    var = unique_var()
    manager.add_observer(var, record)
    with pytest.raises(RuntimeError), transaction.atomic():
        manager.notify_observers(var, 1, 2)
        raise RuntimeError("roll back")
    with transaction.atomic():
        with pytest.raises(RuntimeError), transaction.atomic():
            manager.notify_observers(var, 2, 3)
            raise RuntimeError("roll back the savepoint only")
        manager.notify_observers(var, 3, 4)

    wait_for(lambda: received(var))
    assert [c.new_value for c in received(var)] == [4]
    assert seq_of(var) == 1


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda v: manager.add_observer(v, lambda *a: None), UnknownCallback, "@observer_callback"),
        (lambda v: manager.add_observer(v, "os.system"), UnknownCallback, "no callback is registered"),
        (lambda v: manager.add_observer("", record), InvalidVariableId, "non-empty string"),
        (lambda v: manager.add_observer(NOT_A_STRING, record), InvalidVariableId, "non-empty string"),
        (lambda v: manager.notify_observers(v, 1, datetime(2026, 1, 1)), NotSerializable, "new_value"),
        (lambda v: manager.notify_observers(v, object(), 1), NotSerializable, "old_value"),
        (lambda v: manager.notify_observers(v, 1, 2, {"k": {1, 2}}), NotSerializable, "metadata"),
        (lambda v: manager.notify_observers(v, 1, float("nan")), NotSerializable, "new_value"),
        (lambda v: manager.notify_observers(v, 1, 2, {"seq": 5}), ValueError, "reserved"),
        (lambda v: manager.notify_observers(v, 1, "x" * 300_000), PayloadTooLarge, "OBSERVERS_MAX_PAYLOAD"),
        (lambda v: manager.notify_observers("", 1, 2), InvalidVariableId, "non-empty string"),
        (lambda v: manager.notify_observers(NOT_A_STRING, 1, 2), InvalidVariableId, "non-empty string"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_stored_or_sent(call, error, message):
    var = unique_var()
    ref = manager.add_observer(var, record)
    with pytest.raises(error, match=message):
        call(var)
    assert Observer.objects.count() == 1
    manager.notify_observers(var, "sentinel-old", "sentinel-new")
    wait_for(lambda: received(var))
    assert [(c.observer_ref, c.new_value) for c in received(var)] == [(ref, "sentinel-new")]
    assert seq_of(var) == 1


def test_unknown_callback_error_is_a_value_error_and_non_json_a_type_error():
    assert issubclass(UnknownCallback, ValueError)
    assert issubclass(NotSerializable, TypeError)


def test_5000_observers_each_called_exactly_once():
    var = unique_var("wide")
    refs = make_observers(var, 5000)

    manager.notify_observers(var, "old", "new")

    wait_for(lambda: Received.objects.filter(var_id=var).count() >= 5000, timeout=120)
    called = list(Received.objects.filter(var_id=var).values_list("observer_ref", flat=True))
    assert len(called) == 5000
    assert set(called) == set(refs)


def test_observer_removed_before_its_batch_runs_is_not_called():
    var = unique_var()
    kept, removed = make_observers(var, 2)
    manager.remove_observer(var, removed)
    notification = factories.notification(var)
    delivery.deliver(json.loads(json.dumps(notification)), after=None, upto=max(kept, removed), globs=[])
    assert [c.observer_ref for c in received(var)] == [kept]


def test_a_worker_child_killed_mid_batch_loses_no_observer():
    var = unique_var("crash")
    refs = set(make_observers(var, 200, callback="tests.slow_record"))
    manager.notify_observers(var, 1, 2)

    wait_for(lambda: len(received(var)) >= 20)
    busy_child = _child_running(var)
    os.kill(busy_child, signal.SIGKILL)

    wait_for(lambda: {c.observer_ref for c in received(var)} == refs, timeout=60)


def _child_running(var_id: str) -> int:
    """The pid of the worker child whose callbacks are recording ``var_id`` right now."""
    last = Received.objects.filter(var_id=var_id).order_by("-id").first()
    assert last is not None
    return last.pid

"""Calling a batch of callbacks: isolation and the time limit, in this process."""

import time
import uuid

from observers_app.registry import observer_callback
from observers_app.worker.calls import call_observers

calls: list[tuple[str, dict]] = []


@observer_callback(name="tests.delivery.collect")
def collect(var_id, old_value, new_value, metadata):
    metadata["scribble"] = True  # must not leak into the next callback's metadata
    calls.append((var_id, metadata))


@observer_callback(name="tests.delivery.fail")
def fail(var_id, old_value, new_value, metadata):
    raise ValueError("boom")


@observer_callback(name="tests.delivery.hang")
def hang(var_id, old_value, new_value, metadata):
    try:
        time.sleep(30)
    except Exception:
        time.sleep(30)


NOTIFICATION = {
    "var_id": "v",
    "old_value": 1,
    "new_value": 2,
    "metadata": {"source": "test"},
    "notification_id": "n-1",
    "seq": 7,
    "notified_at": 0.0,
}


def test_each_callback_is_isolated_and_gets_its_own_metadata():
    calls.clear()
    refs = [uuid.uuid4() for _ in range(4)]
    rows = [
        (refs[0], "tests.delivery.collect", 0),
        (refs[1], "tests.delivery.fail", 0),
        (refs[2], "tests.delivery.missing", 0),
        (refs[3], "tests.delivery.collect", 3),
    ]
    outcome = call_observers(rows, NOTIFICATION, time_limit=5)

    assert outcome.called == 4
    assert set(outcome.failed) == {refs[1], refs[2]}
    assert "ValueError: boom" in outcome.failed[refs[1]]
    assert "not registered" in outcome.failed[refs[2]]
    assert outcome.recovered == [refs[3]]
    assert [m["observer_ref"] for _, m in calls] == [str(refs[0]), str(refs[3])]
    first = calls[0][1]
    assert {k: first[k] for k in ("source", "notification_id", "seq")} == {
        "source": "test",
        "notification_id": "n-1",
        "seq": 7,
    }
    assert NOTIFICATION["metadata"] == {"source": "test"}


def test_a_callback_over_the_time_limit_is_interrupted_even_if_it_catches_exception():
    calls.clear()
    hung, after = uuid.uuid4(), uuid.uuid4()
    outcome = call_observers(
        [(hung, "tests.delivery.hang", 0), (after, "tests.delivery.collect", 0)], NOTIFICATION, time_limit=0.2
    )
    assert "CallbackTimeout" in outcome.failed[hung]
    assert [m["observer_ref"] for _, m in calls] == [str(after)]

"""Calling a batch of callbacks: isolation and the time limit, in this process."""

import time
import uuid

import pytest
from django.db import OperationalError

from observers_app.exceptions import BrokerUnavailable
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


@observer_callback(name="tests.delivery.broker_away", transport=True)
def broker_away(var_id, old_value, new_value, metadata):
    raise BrokerUnavailable("the broker blocks publishing")


@observer_callback(name="tests.delivery.database_away", transport=True)
def database_away(var_id, old_value, new_value, metadata):
    raise OperationalError("the database went away")


@observer_callback(name="tests.delivery.blocked", transport=True)
def blocked(var_id, old_value, new_value, metadata):
    time.sleep(30)  # waiting on a broker that does not answer


@observer_callback(name="tests.delivery.transport_bug", transport=True)
def transport_bug(var_id, old_value, new_value, metadata):
    raise KeyError("observer_ref")


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


@pytest.mark.parametrize(
    ("callback", "error"),
    [
        ("tests.delivery.broker_away", BrokerUnavailable),
        ("tests.delivery.database_away", OperationalError),
        ("tests.delivery.blocked", BrokerUnavailable),
    ],
)
def test_the_hub_s_own_transport_failing_on_the_broker_or_database_fails_the_page_not_the_observer(
    callback, error
):
    """A transport callback (webhooks, streams) that cannot hand a notification on because the broker
    or the database is away raises out of the page: no observer is blamed, the page is delivered again."""
    with pytest.raises(error):
        call_observers([(uuid.uuid4(), callback, 0)], NOTIFICATION, time_limit=0.2)


def test_a_transport_callback_s_own_bug_is_still_its_failure():
    ref = uuid.uuid4()
    outcome = call_observers([(ref, "tests.delivery.transport_bug", 0)], NOTIFICATION, time_limit=1)
    assert "KeyError" in outcome.failed[ref]

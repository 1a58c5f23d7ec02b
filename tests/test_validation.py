"""The hub's boundary: each bad name, ref, flag, lease or value gets its own clear hub error, nothing
reaches the database; a change of type is a change."""

import uuid
from typing import Any

import pytest

from observers_app import manager
from observers_app.exceptions import (
    InvalidArgument,
    InvalidName,
    InvalidObserverRef,
    InvalidVariableId,
    NotSerializable,
    ObserversError,
)
from observers_app.models import Observer, Owner
from observers_app.sources import sessions
from tests.conftest import wait_for
from tests.factories import unique_var
from tests.testapp.callbacks import record, record_json
from tests.testapp.models import Received

pytestmark = pytest.mark.django_db(transaction=True)

# Wrong types, as a caller without a type checker passes them.
YES: Any = "yes"
ONE: Any = 1


def deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda v: manager.add_observer("a\x00b", record), InvalidVariableId, "control character"),
        (lambda v: manager.add_observer("line\nbreak", record), InvalidVariableId, "control character"),
        (lambda v: manager.add_observer("\ud800", record), InvalidVariableId, "lone surrogates"),
        (lambda v: manager.add_observer("x" * 256, record), InvalidVariableId, "the limit is 255"),
        (lambda v: manager.notify_observers("tab\there", 1, 2), InvalidVariableId, "control character"),
        (lambda v: manager.add_observer(v, record, glob=YES), InvalidArgument, "glob must be True"),
        (lambda v: manager.add_observer(v, record, coalesce=ONE), InvalidArgument, "coalesce must be"),
        (lambda v: manager.remove_observer(v, "garbage"), InvalidObserverRef, "UUID add_observer returned"),
        (lambda v: manager.reenable_observer("garbage"), InvalidObserverRef, "UUID"),
        (lambda v: manager.removal_of(ONE), InvalidObserverRef, "UUID"),
        (lambda v: manager.open_owner("lease", ttl_s=float("nan")), InvalidArgument, "ttl_s must be above 0"),
        (lambda v: manager.open_owner("lease", ttl_s=float("inf")), InvalidArgument, "ttl_s must be above 0"),
        (lambda v: manager.open_owner("lease", ttl_s=1e10), InvalidArgument, "at most 604800"),
        (lambda v: manager.open_owner("lease", ttl_s=0), InvalidArgument, "ttl_s must be above 0"),
        (lambda v: manager.open_owner("lease", ttl_s=YES), InvalidArgument, "number of seconds"),
        (lambda v: manager.open_owner("n\x00", ttl_s=30), InvalidName, "owner name"),
        (lambda v: manager.open_owner("n" * 300, ttl_s=30), InvalidName, "owner name is 300"),
        (lambda v: manager.notify_observers(v, 1, deep(100_000)), NotSerializable, "nested more than 100"),
        (lambda v: manager.notify_observers(v, 1, 2, {"m": deep(150)}), NotSerializable, "metadata is"),
        (lambda v: manager.notify_observers(v, 1, 2, {ONE: "a", "1": "b"}), NotSerializable, "of type int"),
        (lambda v: manager.notify_observers(v, {1: "a"}, {2: "b"}), NotSerializable, "old_value has the key"),
        (lambda v: manager.notify_observers(v, 1, 2, {"seq": 5}), InvalidArgument, "reserved"),
        (lambda v: sessions.set_variable("s" * 101, "x", 1), InvalidVariableId, "session_id is 101"),
        (lambda v: sessions.set_variable("s", "x" * 101, 1), InvalidVariableId, "name is 101"),
        (lambda v: sessions.set_variable("s\x00", "x", 1), InvalidVariableId, "control character"),
        (lambda v: sessions.get_variable("s", "x\x00"), InvalidVariableId, "control character"),
        (lambda v: sessions.set_variable("s", "x", "nul \x00"), ObserversError, "NUL"),
    ],
)
def test_bad_input_gets_a_clear_hub_error_and_nothing_is_written(call, error, message):
    var = unique_var()
    manager.add_observer(var, record)
    owners = Owner.objects.count()
    with pytest.raises(error, match=message):
        call(var)
    assert issubclass(error, ObserversError)
    assert Observer.objects.count() == 1 and Owner.objects.count() == owners


def test_a_lease_of_at_most_a_week_is_granted():
    with manager.open_owner("long lease", ttl_s=7 * 24 * 3600) as lease:
        assert manager.add_observer(unique_var(), record, owner=lease)


def test_a_name_with_a_space_or_unicode_letters_is_a_name():
    for var in ("price of café", "ünïcödé:名前", "emoji 😀"):
        ref = manager.add_observer(var, record)
        assert manager.remove_observer(var, str(ref))


@pytest.mark.usefixtures("worker")
def test_a_change_of_type_is_a_change_and_the_same_json_is_not():
    var = unique_var("types")
    manager.add_observer(var, record_json)
    changes = [(1, True), (1, 1.0), (0, False), ({"a": 1}, {"a": True}), (None, 0), ("1", 1)]
    same = [([1], (1,)), ({"a": 1, "b": 2}, {"b": 2, "a": 1}), (1, 1), (2.5, 2.5)]
    ids = [manager.notify_observers(var, old, new) for old, new in changes]
    assert all(ids)
    assert [manager.notify_observers(var, old, new) for old, new in same] == [None] * len(same)
    wait_for(lambda: Received.objects.filter(var_id=var).count() >= len(changes))
    got = {r.metadata["notification_id"]: r.new_value for r in Received.objects.filter(var_id=var)}
    expected = ["true", "1.0", "false", '{"a": true}', "0", "1"]
    assert [got[notification_id] for notification_id in ids] == expected


@pytest.mark.usefixtures("worker")
def test_a_session_variable_set_from_1_to_true_notifies():
    session = uuid.uuid4().hex
    var = sessions.variable_id(session, "flag")
    manager.add_observer(var, record_json)
    sessions.set_variable(session, "flag", 1)
    assert sessions.set_variable(session, "flag", True) == 2
    wait_for(lambda: Received.objects.filter(var_id=var).count() >= 2)
    received = sorted(Received.objects.filter(var_id=var), key=lambda r: r.metadata["version"])
    assert [r.new_value for r in received] == ["1", "true"]  # by version: two pool processes may race

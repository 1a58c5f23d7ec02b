"""The session store: atomic sets, versions, and notifications whose seq follows commit order."""

import itertools

import pytest
from django.db import transaction

from observers_app import manager
from observers_app.sources import sessions
from tests.conftest import start_client_process, wait_for, wait_ready
from tests.factories import unique_var
from tests.testapp.callbacks import record
from tests.testapp.models import Received

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


def test_set_get_delete_and_notification():
    session = unique_var("s").replace(":", "-")
    var = sessions.variable_id(session, "cart")
    assert var == f"session:{session}:cart"
    manager.add_observer(var, record)

    assert sessions.set_variable(session, "cart", {"items": 1}, {"by": "test"}) == 1
    assert sessions.get_variable(session, "cart") == {"items": 1}
    assert sessions.set_variable(session, "cart", {"items": 2}) == 2
    assert sessions.delete_variable(session, "cart") is True
    assert sessions.get_variable(session, "cart", "gone") == "gone"
    assert sessions.delete_variable(session, "cart") is False

    calls = wait_for(
        lambda: len(Received.objects.filter(var_id=var)) == 3 and Received.objects.filter(var_id=var)
    )
    by_seq = sorted(calls, key=lambda c: c.metadata["seq"])
    assert [(c.old_value, c.new_value) for c in by_seq] == [
        (None, {"items": 1}),
        ({"items": 1}, {"items": 2}),
        ({"items": 2}, None),
    ]
    first = by_seq[0].metadata
    assert first["by"] == "test"
    assert first["session_id"] == session
    assert isinstance(first["timestamp"], float)
    assert [c.metadata["version"] for c in by_seq] == [1, 2, 3]


def test_a_set_in_a_rolled_back_transaction_changes_and_sends_nothing():
    session = unique_var("s")
    var = sessions.variable_id(session, "x")
    manager.add_observer(var, record)
    with pytest.raises(RuntimeError), transaction.atomic():
        sessions.set_variable(session, "x", 1)
        raise RuntimeError("roll back")
    assert sessions.get_variable(session, "x") is None
    sessions.set_variable(session, "x", 2)
    [call] = wait_for(lambda: list(Received.objects.filter(var_id=var)))
    assert (call.old_value, call.new_value, call.metadata["seq"]) == (None, 2, 1)


def test_four_processes_setting_one_variable_200_times_each():
    session = unique_var("race")
    var = sessions.variable_id(session, "x")
    manager.add_observer(var, record)

    processes = [start_client_process("sets", session, "200", f"p{i}") for i in range(4)]
    for process in processes:
        wait_ready(process)
        assert process.wait(timeout=120) == 0

    wait_for(lambda: Received.objects.filter(var_id=var).count() >= 800, timeout=120)
    calls = sorted(Received.objects.filter(var_id=var), key=lambda c: c.metadata["seq"])
    assert len(calls) == 800
    assert [c.metadata["seq"] for c in calls] == list(range(1, 801))
    assert [c.metadata["version"] for c in calls] == list(range(1, 801))
    assert calls[0].old_value is None
    for previous, current in itertools.pairwise(calls):
        assert current.old_value == previous.new_value
    assert sessions.get_variable(session, "x") == calls[-1].new_value


def test_names_built_from_parts_are_unambiguous_and_a_session_glob_matches_only_its_session():
    base = unique_var("s").replace(":", "-")
    assert sessions.variable_id(base, "evil:cart") != sessions.variable_id(f"{base}:evil", "cart")
    assert sessions.variable_id(f"{base}%3Aevil", "cart") != sessions.variable_id(f"{base}:evil", "cart")
    manager.add_observer(f"session:{base}:*", record, glob=True)

    sessions.set_variable(f"{base}:evil", "cart", "other session")
    sessions.set_variable(base, "evil:cart", "own session")

    wait_for(lambda: Received.objects.filter(var_id__startswith="session:").filter(new_value="own session"))
    sessions.set_variable(base, "sentinel", "sentinel")
    wait_for(lambda: Received.objects.filter(var_id=sessions.variable_id(base, "sentinel")))
    assert sorted(
        Received.objects.filter(var_id__contains=base).values_list("new_value", flat=True), key=str
    ) == [
        "own session",
        "sentinel",
    ]


def test_a_value_reads_back_exactly_as_it_was_set():
    """PostgreSQL's jsonb would turn these floats into an int, 0 and a 301-digit int."""
    session = unique_var("exact").replace(":", "-")
    values = [6.003101936092242e16, -0.0, 1e300, 1.0, [1, 1.0, {"b": 2.5e-300}]]
    for n, value in enumerate(values):
        sessions.set_variable(session, f"v{n}", value)

    read = [sessions.get_variable(session, f"v{n}") for n in range(len(values))]

    assert [repr(value) for value in read] == [repr(value) for value in values]

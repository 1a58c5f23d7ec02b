"""The history: every notification a worker dispatches kept, numbered, with its variable's epoch;
bounded by count and age; a reader told when it missed some."""

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from observers_app import manager, tasks
from observers_app.exceptions import InvalidArgument, InvalidVariableId
from observers_app.models import HistoryEntry, VariableState
from observers_app.worker.batching import DONE
from tests.conftest import wait_for
from tests.factories import unique_var
from tests.testapp.callbacks import record
from tests.testapp.models import Received

pytestmark = pytest.mark.django_db(transaction=True)


def message(var_id: str, new_value: int) -> list[Any]:
    return [var_id, new_value - 1, new_value, {"n": new_value}, str(uuid.uuid4()), time.time()]


@pytest.mark.usefixtures("worker")
def test_every_notification_is_kept_in_order_with_the_epoch_its_observers_got():
    var = unique_var("history")
    manager.add_observer(var, record)
    manager.add_observer(f"{var[:-2]}*", record, glob=True)
    ids = [manager.notify_observers(var, n - 1, n, {"n": n}, ordered=n == 3) for n in range(1, 6)]
    wait_for(lambda: Received.objects.filter(var_id=var).count() == 10)

    kept = manager.history(var)
    assert [entry.seq for entry in kept.entries] == [1, 2, 3, 4, 5]
    assert {entry.notification_id: entry.new_value for entry in kept.entries} == dict(
        zip(ids, range(1, 6), strict=True)
    )
    assert {(e.old_value, e.new_value, (e.metadata or {}).get("n"), e.observers) for e in kept.entries} == {
        (n - 1, n, n, 2) for n in range(1, 6)
    }
    assert kept.complete and len(kept.epoch) == 8
    got = Received.objects.filter(var_id=var)
    assert {(c.metadata["epoch"], c.metadata["seq"]) for c in got} == {(kept.epoch, n) for n in range(1, 6)}
    later = manager.history(var, after_seq=3)
    assert [entry.seq for entry in later.entries] == [4, 5] and later.complete
    assert [entry.seq for entry in manager.history(var, limit=2).entries] == [4, 5]
    assert [entry.seq for entry in manager.history(var, after_seq=1, limit=2).entries] == [2, 3]


def test_the_sweep_keeps_the_newest_entries_and_a_reader_before_them_is_told(settings):
    settings.OBSERVERS_HISTORY_MAX_ENTRIES = 3
    var = unique_var("bounded")
    manager.add_observer(var, record)
    tasks.dispatch([message(var, n) for n in range(1, 6)])
    assert [e.seq for e in manager.history(var).entries] == [1, 2, 3, 4, 5]

    assert manager.sweep(batch_size=1)["history_pruned"] == 2
    kept = manager.history(var, after_seq=0)
    assert [e.seq for e in kept.entries] == [3, 4, 5] and not kept.complete
    assert not manager.history(var, after_seq=1).complete
    assert manager.history(var, after_seq=2).complete
    assert manager.history(var, after_seq=5).complete and manager.history(var, after_seq=5).entries == []
    assert not manager.history(var, after_seq=6).complete  # beyond its numbering: another epoch's seq


def test_entries_older_than_the_max_age_are_pruned(settings):
    settings.OBSERVERS_HISTORY_MAX_AGE = 60
    var = unique_var("aged")
    manager.add_observer(var, record)
    tasks.dispatch([message(var, 1), message(var, 2), message(var, 3)])
    HistoryEntry.objects.filter(var_id=var, seq__lte=2).update(at=timezone.now() - timedelta(seconds=120))

    assert manager.sweep()["history_pruned"] >= 2
    kept = manager.history(var, after_seq=1)
    assert [e.seq for e in kept.entries] == [3] and not kept.complete
    assert manager.history(var, after_seq=2).complete


def test_a_variable_numbered_again_has_another_epoch_and_none_of_its_old_entries(settings):
    var = unique_var("renumbered")
    ref = manager.add_observer(var, record)
    tasks.dispatch([message(var, 1), message(var, 2)])
    before = manager.history(var)
    manager.remove_observer(var, ref)
    VariableState.objects.filter(var_id=var).update(last_notified_at=timezone.now() - timedelta(days=30))
    manager.sweep()
    assert not VariableState.objects.filter(var_id=var).exists()
    assert not HistoryEntry.objects.filter(var_id=var).exists()

    manager.add_observer(var, record)
    tasks.dispatch([message(var, 3)])
    after = manager.history(var)
    assert [e.seq for e in after.entries] == [1] and after.entries[0].new_value == 3
    assert after.epoch != before.epoch


def test_with_the_history_off_nothing_is_kept_and_each_notification_changes_the_epoch(settings):
    settings.OBSERVERS_HISTORY = False
    var = unique_var("off")
    manager.add_observer(var, record)
    tasks.dispatch([message(var, 1)])
    tasks.dispatch([message(var, 2)])

    got = sorted(Received.objects.filter(var_id=var), key=lambda c: c.metadata["seq"])
    assert [c.metadata["seq"] for c in got] == [1, 2]
    assert got[0].metadata["epoch"] != got[1].metadata["epoch"]
    kept = manager.history(var, after_seq=1)
    assert kept.entries == [] and not kept.complete and kept.epoch == got[1].metadata["epoch"]


def test_a_batch_with_one_message_twice_keeps_one_entry():
    var = unique_var("twice")
    manager.add_observer(var, record)
    repeated = [*message(var, 1), 7]  # numbered by its caller, published twice
    assert tasks.dispatch([repeated, repeated]) == [DONE, DONE]
    assert [e.seq for e in manager.history(var).entries] == [7]


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        (("",), {}, InvalidVariableId),
        (("var:x",), {"after_seq": -1}, InvalidArgument),
        (("var:x",), {"after_seq": "3"}, InvalidArgument),
        (("var:x",), {"limit": 0}, InvalidArgument),
        (("var:x",), {"limit": 10_001}, InvalidArgument),
    ],
)
def test_bad_arguments_are_refused(args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception]):
    with pytest.raises(error):
        manager.history(*args, **kwargs)


def test_keeping_a_batch_costs_its_dispatch_one_statement(settings):
    var_ids = [unique_var("cost") for _ in range(5)]
    manager.add_observers(var_ids, record)

    def statements(history: bool) -> int:
        settings.OBSERVERS_HISTORY = history
        batch = [message(var, n) for n in (1, 2) for var in var_ids]
        with CaptureQueriesContext(connection) as queries:
            assert tasks.dispatch(batch) == [DONE] * len(batch)
        return len(queries.captured_queries)

    statements(True)  # statements compiled and prepared once per process
    assert statements(True) == statements(False) + 1

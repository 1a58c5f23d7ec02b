"""One bad notification, message or error text never costs the others their delivery or counters."""

import json
import time
import uuid
from typing import Any

import pytest

from observers_app import manager, registry, tasks, wiring
from observers_app.exceptions import UnstorableValue
from observers_app.models import DeadLetter, Observer
from observers_app.publishing import broker
from observers_app.telemetry import counters
from observers_app.worker.batching import DONE
from tests.conftest import wait_for
from tests.factories import make_observers, unique_var
from tests.testapp.callbacks import explode_nul, record, slow_record
from tests.testapp.models import Received

pytestmark = pytest.mark.django_db(transaction=True)

POISONS = ["a\x00b", "\ud800", {"k\x00": 1}, ["ok", {"deep": "\udfff"}]]


def message(var_id: str, new_value: Any) -> list[Any]:
    return [var_id, None, new_value, None, str(uuid.uuid4()), time.time()]


def values(var_ids: list[str]) -> list[Any]:
    return sorted(Received.objects.filter(var_id__in=var_ids).values_list("new_value", flat=True))


def sent() -> int:
    return counters.read()[0]["notifications_sent"]


@pytest.mark.parametrize("poison", POISONS)
def test_a_batch_with_one_poisoned_notification_delivers_every_good_one(poison):
    """A value the database cannot store, to a variable with a coalescing observer, between two good
    notifications: the good ones are delivered and counted, the poisoned one fails alone."""
    good_b, poisoned, good_c = unique_var("b"), unique_var("a"), unique_var("c")
    for var in (good_b, poisoned, good_c):
        manager.add_observer(var, record)
    manager.add_observer(poisoned, record, coalesce=True)
    before = sent()

    outcomes = tasks.dispatch([message(good_b, 1), message(poisoned, poison), message(good_c, 3)])

    assert outcomes[0] == DONE and outcomes[2] == DONE
    assert "\x00" not in outcomes[1]  # SQLite stores what PostgreSQL refuses: it may even succeed
    assert values([good_b, good_c]) == [1, 3]
    assert sent() - before >= 2


@pytest.mark.parametrize(
    "malformed",
    [[1, 2], "not a list", [42, None, 1, None, "id", 0.0], ["x\ny", None, 1, None, "id", 0.0], None],
)
def test_a_malformed_message_fails_alone(malformed):
    good_b, good_c = unique_var("b"), unique_var("c")
    manager.add_observer(good_b, record)
    manager.add_observer(good_c, record)

    outcomes = tasks.dispatch([message(good_b, 1), malformed, message(good_c, 3)])

    assert outcomes[0] == DONE and outcomes[2] == DONE
    assert outcomes[1].startswith("InvalidMessage")
    assert values([good_b, good_c]) == [1, 3]


@pytest.mark.usefixtures("worker")
def test_poisoned_and_malformed_messages_in_one_worker_batch_cost_no_neighbour_its_delivery():
    """Through the broker: while both pool processes are busy, the messages wait and go to the pool
    as one batch; every good one is delivered."""
    busy = unique_var("busy")
    make_observers(busy, 20, callback=registry.name_of(slow_record))
    goods = [unique_var("good") for _ in range(4)]
    for var in goods:
        manager.add_observer(var, record)
    poisoned = unique_var("poisoned")
    manager.add_observer(poisoned, record, coalesce=True)
    busy_messages = [(wiring.DISPATCH_TASK, json.dumps(message(busy, n))) for n in range(2)]
    broker.publish_confirmed(busy_messages)  # ~1 s of callbacks each: both pool processes busy
    batch = [message(goods[0], 1), message(poisoned, "a\x00b"), message(goods[1], 2), [1, 2]]
    batch += [message(goods[2], 3), message(poisoned, "\ud800"), message(goods[3], 4)]
    broker.publish_confirmed([(wiring.DISPATCH_TASK, json.dumps(args)) for args in batch])

    wait_for(lambda: Received.objects.filter(var_id__in=goods).count() >= 4, timeout=30)
    assert values(goods) == [1, 2, 3, 4]
    # Done only once the worker is: the busy callbacks ran, the malformed message was parked (the
    # test's database is emptied next, which must not race the worker's writes).
    wait_for(lambda: Received.objects.filter(var_id=busy).count() == 40, timeout=60)
    wait_for(lambda: DeadLetter.objects.filter(args="[1, 2]").exists(), timeout=120)


@pytest.mark.usefixtures("worker")
def test_a_callback_error_text_with_a_nul_is_recorded_and_quarantines(settings):
    var = unique_var("nul-error")
    ref = manager.add_observer(var, explode_nul)
    for n in range(3):  # OBSERVERS_QUARANTINE_AFTER = 3 in the test settings
        manager.notify_observers(var, n, n + 1)
        wait_for(lambda: Observer.objects.get(id=ref).failures >= n + 1)  # noqa: B023
    observer = Observer.objects.get(id=ref)
    assert observer.quarantined_at is not None
    assert "\x00" not in observer.last_error and len(observer.last_error) <= 2000
    assert observer.last_error.startswith("RuntimeError: bad byte \\x00")
    assert (manager.removal_of(ref) or {}).get("reason") == "quarantined"


@pytest.mark.parametrize("poison", POISONS)
def test_notify_refuses_values_the_database_cannot_store(poison):
    var = unique_var()
    manager.add_observer(var, record)
    with pytest.raises(UnstorableValue, match=r"NUL|lone surrogate"):
        manager.notify_observers(var, None, poison)
    with pytest.raises(UnstorableValue, match="metadata"):
        manager.notify_observers(var, None, 1, {"note": poison})

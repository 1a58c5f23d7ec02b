"""The dispatch batch: one outcome per message, one message's failure is its own, and numbering a
batch never deadlocks a caller."""

import threading
import time
import uuid
from typing import Any

import pytest
from django.db import connection, connections, transaction

from observers_app import manager, signals, tasks
from observers_app.models import VariableState
from observers_app.publishing import numbering
from observers_app.validation import dispatch_notification
from observers_app.worker import dispatch
from observers_app.worker.batching import DONE
from tests.factories import unique_var
from tests.testapp.callbacks import record
from tests.testapp.models import Received

pytestmark = pytest.mark.django_db(transaction=True)


def message(var_id: str, new_value: int) -> list[Any]:
    return [var_id, new_value - 1, new_value, None, str(uuid.uuid4()), time.time()]


def test_a_batch_reports_each_message_and_one_failure_does_not_stop_the_others():
    good, bad = unique_var("good"), unique_var("bad")
    manager.add_observer(good, record)
    manager.add_observer(bad, record)

    def explode(*, var_id: str, **kwargs: Any) -> None:
        if var_id == bad:
            raise RuntimeError("receiver broke")

    signals.notification_dispatched.connect(explode, dispatch_uid="test-explode")
    try:
        outcomes = tasks.dispatch([message(good, 1), message(bad, 1), message(good, 2)])
    finally:
        signals.notification_dispatched.disconnect(dispatch_uid="test-explode")

    assert outcomes == [DONE, "RuntimeError: receiver broke", DONE]
    delivered = Received.objects.filter(var_id=good).order_by("id")
    assert [(c.new_value, c.metadata["seq"]) for c in delivered] == [(1, 1), (2, 2)]
    assert not Received.objects.filter(var_id=bad).exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: PostgreSQL")
def test_numbering_a_batch_never_deadlocks_a_caller_numbering_in_its_transaction():
    first, second = sorted([unique_var("a"), unique_var("b")])
    holding_second, batch_started = threading.Event(), threading.Event()
    caller_errors: list[BaseException] = []

    def caller() -> None:  # an ordered=True caller that numbers `second`, then `first`, in one transaction
        try:
            with transaction.atomic():
                numbering.next_seq(second)
                holding_second.set()
                batch_started.wait(5)
                time.sleep(0.3)  # the batch now holds `first` (row order) and waits for `second`
                numbering.next_seq(first)
        except BaseException as exc:
            caller_errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=caller)
    thread.start()
    assert holding_second.wait(5)
    batch = [dispatch_notification(message(var, 1)) for var in (first, second, first)]
    batch_started.set()
    dispatch._number(batch, [])
    thread.join(10)

    assert caller_errors == []  # without the lock wait limit one of the two is a deadlock victim
    # The caller took `second` 1, and `first` before or after the batch's two numbers of it.
    assert [n["seq"] for n in batch] in ([1, 2, 2], [2, 2, 3])
    assert sorted(VariableState.objects.filter(var_id__in=[first, second]).values_list("seq", flat=True)) == [
        2,
        3,
    ]

"""The dispatch batch: one outcome per message, and one message's failure is its own."""

import time
import uuid
from typing import Any

import pytest

from observers_app import events, manager, tasks
from observers_app.batching import DONE
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

    events.notification_dispatched.connect(explode, dispatch_uid="test-explode")
    try:
        outcomes = tasks.dispatch([message(good, 1), message(bad, 1), message(good, 2)])
    finally:
        events.notification_dispatched.disconnect(dispatch_uid="test-explode")

    assert outcomes == [DONE, "RuntimeError: receiver broke", DONE]
    delivered = Received.objects.filter(var_id=good).order_by("id")
    assert [(c.new_value, c.metadata["seq"]) for c in delivered] == [(1, 1), (2, 2)]
    assert not Received.objects.filter(var_id=bad).exists()

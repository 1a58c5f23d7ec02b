"""A large fan-out stores its notification once: its deliver pages carry a reference, not a copy."""

import json
import time
import uuid
from typing import Any

import pytest

from observers_app import manager
from observers_app.models import Payload
from observers_app.publishing import broker
from observers_app.worker import dispatch
from tests.conftest import wait_for
from tests.factories import make_observers, unique_var
from tests.testapp.models import Received

pytestmark = pytest.mark.django_db(transaction=True)

BIG = "x" * 20_000


def notification(var_id: str) -> dict[str, Any]:
    return {
        "var_id": var_id,
        "old_value": None,
        "new_value": BIG,
        "metadata": None,
        "notification_id": str(uuid.uuid4()),
        "seq": None,
        "notified_at": time.time(),
    }


def pages_sent(monkeypatch) -> list[str]:
    """The deliver pages' messages a fan-out here publishes (kept, not sent); no callback runs."""
    sent: list[str] = []
    monkeypatch.setattr(
        broker, "publish_confirmed", lambda messages, **kw: sent.extend(args for _, args in messages)
    )
    monkeypatch.setattr(
        "observers_app.worker.calls.call_observers", lambda *a, **kw: dispatch.delivery.calls.BatchOutcome()
    )
    return sent


def test_deliver_pages_carry_a_reference_of_bounded_size_not_the_value(monkeypatch):
    var = unique_var("wide")
    make_observers(var, 1000)
    sent = pages_sent(monkeypatch)

    sent_notification = notification(var)
    list(dispatch.fan_out([sent_notification]))

    assert len(sent) == 3  # 1,000 observers: the first page here, three deliver pages
    assert all(len(message) < 250 for message in sent), [len(message) for message in sent]
    reference = json.loads(sent[0])[0]
    assert reference["notification_id"] == sent_notification["notification_id"]
    stored = Payload.objects.get(id=reference["payload"])
    assert json.loads(stored.notification)["new_value"] == BIG and stored.pages == 3


@pytest.mark.usefixtures("worker")
def test_every_observer_of_a_large_fan_out_gets_the_value_and_the_payload_goes_after_the_last_page():
    var = unique_var("wide")
    refs = make_observers(var, 1000)

    manager.notify_observers(var, None, BIG)

    wait_for(lambda: Received.objects.filter(var_id=var).count() >= 1000, timeout=60)
    assert set(
        Received.objects.filter(var_id=var, new_value=BIG).values_list("observer_ref", flat=True)
    ) == set(refs)
    wait_for(lambda: not Payload.objects.exists())


def test_a_small_notification_travels_in_its_pages_and_nothing_is_stored(monkeypatch):
    var = unique_var("wide")
    make_observers(var, 1000)
    sent = pages_sent(monkeypatch)
    small = {**notification(var), "new_value": "small"}

    list(dispatch.fan_out([small]))

    assert len(sent) == 3
    carried = [json.loads(message)[0] for message in sent]
    assert {(page["notification_id"], page["new_value"]) for page in carried} == {
        (small["notification_id"], "small")
    }
    assert not Payload.objects.exists()
    assert all(message.startswith('[{"notification_id":') for message in sent)  # shown first in Flower

"""Poison messages: parked after OBSERVERS_MAX_DELIVERIES failed runs, counted, shown, replayed once fixed."""

import json
import uuid
from io import StringIO

import pytest
from django.core.management import call_command

from observers_app import conf, manager, wiring
from observers_app.models import DeadLetter
from observers_app.publishing import broker
from tests.conftest import wait_for
from tests.factories import make_observers, unique_var
from tests.testapp.models import Received

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


def parked_with(text: str) -> DeadLetter | None:
    return DeadLetter.objects.filter(args__contains=text).first()


def test_a_dispatch_failing_every_time_is_parked_counted_shown_and_replayed_once_fixed(
    admin_client, settings
):
    var = unique_var("poison")
    [ref] = make_observers(var, 1)
    before = manager.get_stats()

    notification_id = manager.notify_observers(var, 1, 2)
    assert notification_id is not None

    letter = wait_for(lambda: parked_with(notification_id), timeout=60)
    assert letter.task == wiring.DISPATCH_TASK
    assert letter.deliveries == conf.max_deliveries()
    assert "poison on purpose" in letter.reason
    stats = manager.get_stats()
    assert stats["messages_parked"] == before["messages_parked"] + 1
    assert stats["dead_letters"] == before["dead_letters"] + 1
    assert not Received.objects.filter(var_id=var).exists()
    page = admin_client.get("/admin/observers_app/deadletter/")
    assert page.status_code == 200 and "poison on purpose" in page.content.decode()

    Received.objects.create(observer_ref=uuid.uuid4(), var_id=f"{var}:fixed", metadata={}, pid=0)  # the fix
    response = admin_client.post(
        "/admin/observers_app/deadletter/", {"action": "replay", "_selected_action": [letter.id]}
    )
    assert response.status_code == 302
    [call] = wait_for(lambda: list(Received.objects.filter(var_id=var)))
    assert (call.observer_ref, call.metadata["notification_id"]) == (ref, notification_id)
    assert not DeadLetter.objects.filter(id=letter.id).exists()
    assert manager.get_stats()["messages_replayed"] == before["messages_replayed"] + 1


def test_a_dispatch_message_a_worker_cannot_read_is_parked_and_the_command_replays_it():
    marker = f"unreadable-{uuid.uuid4().hex}"
    broker.publish_confirmed([(wiring.DISPATCH_TASK, json.dumps([marker]))])

    letter = wait_for(lambda: parked_with(marker), timeout=60)
    assert "InvalidMessage: a dispatch message is a list of 6 or 7 arguments" in letter.reason

    out = StringIO()
    call_command("observers_replay", str(letter.id), stdout=out)
    assert out.getvalue().strip() == "replayed 1"
    wait_for(
        lambda: DeadLetter.objects.filter(args__contains=marker).exclude(id=letter.id).exists(), timeout=60
    )


def test_a_deliver_page_failing_every_time_is_parked():
    marker = f"bad-page-{uuid.uuid4().hex}"
    broker.publish_confirmed(
        [(wiring.DELIVER_TASK, json.dumps([{"not": marker}, None, str(uuid.uuid4()), []]))]
    )

    letter = wait_for(lambda: parked_with(marker), timeout=60)
    assert letter.task == wiring.DELIVER_TASK
    assert "KeyError" in letter.reason


def test_a_dispatch_that_kills_its_worker_process_is_parked_for_it_and_spares_its_batch():
    deadly, mate = unique_var("deadly"), unique_var("mate")
    make_observers(deadly, 1, callback="tests.die")
    [ref] = make_observers(mate, 1)
    notification_id = manager.notify_observers(deadly, 1, 2)
    mate_id = manager.notify_observers(mate, 1, 2)
    assert notification_id is not None and mate_id is not None

    letter = wait_for(lambda: parked_with(notification_id), timeout=120)
    assert letter.deliveries == conf.max_deliveries()
    assert letter.reason.startswith("its worker process died running it (WorkerLostError")
    calls = wait_for(lambda: list(Received.objects.filter(var_id=mate)), timeout=60)  # maybe twice
    assert {(call.observer_ref, call.metadata["notification_id"]) for call in calls} == {(ref, mate_id)}
    assert not DeadLetter.objects.filter(args__contains=mate_id).exists()

"""Durable notifications: written with the caller's transaction, published after commit or by a worker."""

import json
import time
import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from observers_app import manager, wiring
from observers_app.models import OutboxMessage
from observers_app.publishing import buffer, outbox
from tests import factories
from tests.conftest import wait_for
from tests.factories import make_observers, unique_var
from tests.testapp.models import Received

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


def delivered(var_id: str) -> set[tuple[str, str]]:
    return {
        (str(row.observer_ref), row.metadata["notification_id"])
        for row in Received.objects.filter(var_id=var_id)
    }


def test_a_committed_durable_notification_is_written_with_the_transaction_then_sent_and_its_row_deleted():
    var = unique_var("durable")
    refs = make_observers(var, 3)

    with transaction.atomic():
        notification_id = manager.notify_observers(var, 1, 2, durable=True)
        assert notification_id is not None
        assert OutboxMessage.objects.filter(id=notification_id).exists()  # in the caller's transaction

    wait_for(lambda: delivered(var) == {(str(ref), notification_id) for ref in refs})
    wait_for(lambda: not OutboxMessage.objects.filter(id=notification_id).exists())


def test_a_rolled_back_durable_notification_leaves_no_row_and_is_never_sent():
    var = unique_var("durable")
    make_observers(var, 2)

    with pytest.raises(RuntimeError), transaction.atomic():
        notification_id = manager.notify_observers(var, 1, 2, durable=True)
        raise RuntimeError("roll back")
    committed = manager.notify_observers(var, 2, 3, durable=True)  # outside atomic(): its own insert

    wait_for(lambda: {nid for _, nid in delivered(var)} == {committed})
    assert buffer.flush()
    assert not OutboxMessage.objects.filter(id__in=[str(notification_id), str(committed)]).exists()
    assert notification_id not in {nid for _, nid in delivered(var)}


@override_settings(OBSERVERS_DURABLE=True)
def test_the_setting_makes_notifications_durable_and_durable_false_overrides_it():
    var = unique_var("durable")
    make_observers(var, 1)
    with transaction.atomic():
        durable = manager.notify_observers(var, 1, 2)
        fast = manager.notify_observers(var, 2, 3, durable=False)
        assert durable is not None and fast is not None
        assert OutboxMessage.objects.filter(id=durable).exists()
        assert not OutboxMessage.objects.filter(id=fast).exists()
    wait_for(lambda: {nid for _, nid in delivered(var)} == {durable, fast})


def test_a_row_its_caller_left_unsent_is_published_by_the_running_worker():
    var = unique_var("orphan")
    refs = make_observers(var, 2)
    notification_id = str(uuid.uuid4())
    args = [var, 1, 2, None, notification_id, time.time()]
    # As a caller that committed and was killed before publishing leaves it.
    OutboxMessage.objects.create(
        id=notification_id, args=json.dumps(args), created_at=timezone.now() - timedelta(seconds=60)
    )
    before = manager.get_stats()["outbox_republished"]

    wait_for(lambda: delivered(var) == {(str(ref), notification_id) for ref in refs}, timeout=30)
    assert not OutboxMessage.objects.filter(id=notification_id).exists()
    assert manager.get_stats()["outbox_republished"] >= before + 1


def test_a_page_the_broker_did_not_take_is_held_and_published_by_the_running_worker_at_once():
    var = unique_var("held")
    [ref] = make_observers(var, 1)
    notification = factories.notification(var, notified_at=time.time())
    before = manager.get_stats()
    outbox.hold([(wiring.DELIVER_TASK, json.dumps([notification, None, str(uuid.UUID(int=2**128 - 1)), []]))])

    wait_for(lambda: delivered(var) == {(str(ref), notification["notification_id"])}, timeout=30)
    assert not OutboxMessage.objects.exists()
    # The worker counts what it republished after the rows' deletion committed: polled, not raced.
    wait_for(
        lambda: manager.get_stats()["outbox_republished"] >= before["outbox_republished"] + 1, timeout=10
    )
    assert manager.get_stats()["messages_held"] == before["messages_held"] + 1

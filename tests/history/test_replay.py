"""Replaying the history to one observer: a real worker delivers it, a webhook to a real receiver."""

import io
import json
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from standardwebhooks import Webhook

from observers_app import manager
from observers_app.exceptions import InvalidObserverRef, ReplayRefused
from observers_app.models import Observer, Owner
from observers_app.registry import name_of
from observers_app.streams.forwarding import FORWARD_CALLBACK
from observers_app.webhooks import messages
from observers_app.worker.replaying import REPLAY_PAGE
from tests.conftest import wait_for
from tests.factories import unique_var
from tests.receivers import Reply, running_receiver
from tests.testapp.callbacks import explode, record
from tests.testapp.models import Received

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]

# Longer than the test schedule's near retries (0.2 s, 0.4 s, 0.6 s): nothing more came by then.
QUIET_S = 1.0


def received(ref: uuid.UUID) -> list[Received]:
    return list(Received.objects.filter(observer_ref=str(ref)).order_by("id"))


def notify_all(var_id: str, count: int, start: int = 0) -> list[str]:
    """``count`` notifications of ``var_id``, their ids in order."""
    return [str(manager.notify_observers(var_id, n, n + 1, {"n": n})) for n in range(start, start + count)]


def replayed_count() -> int:
    return int(manager.get_stats()["history_replayed"])


def test_a_webhook_disabled_for_a_while_gets_every_notification_it_missed_once_replayed():
    var = unique_var("down")
    with running_receiver() as receiver:
        receiver.default = Reply(status=503)
        ref = manager.add_webhook(var, receiver.url)
        down_since = timezone.now()
        # Two notifications fail 4 attempts each (the test schedule): disabled at the 6th failure, and
        # the retries still due are given up.
        failed_ids = notify_all(var, 2)
        wait_for(lambda: Observer.objects.get(id=ref).quarantined_at is not None)
        # While it is disabled, nothing is even tried.
        disabled_ids = notify_all(var, 3, start=2)
        wait_for(lambda: len(manager.history(var).entries) == 5)
        time.sleep(QUIET_S)  # the last retries found it disabled: no request is on its way
        receiver.default = Reply(status=200)
        assert manager.reenable_observer(ref)
        mark, before = len(receiver.requests), replayed_count()

        replayed = manager.replay(ref, since=down_since)

        assert (replayed.notifications, replayed.variables, replayed.complete) == (5, 1, True)
        expected = {messages.message_id(nid, str(ref)): nid for nid in failed_ids + disabled_ids}
        wait_for(lambda: len(receiver.requests) >= mark + 5)
        time.sleep(QUIET_S)
        got = receiver.requests[mark:]
        assert Counter(r.headers["webhook-id"] for r in got) == Counter(set(expected))  # each once
        for request in got:
            payload = Webhook(ref.secret).verify(request.body, request.headers)
            metadata = payload["data"]["metadata"]
            # The original notification id, in the body and (derived from it) in the webhook-id header.
            assert expected[request.headers["webhook-id"]] == metadata["notification_id"]
            assert metadata["replayed"] is True and metadata["epoch"] == manager.history(var).epoch
        assert sorted(json.loads(r.body)["data"]["new"] for r in got) == [1, 2, 3, 4, 5]
        wait_for(lambda: replayed_count() == before + 5)
        # Live notifications reach it again as usual.
        live_id = manager.notify_observers(var, 5, 6)
        wait_for(lambda: len(receiver.requests) == mark + 6)
        live = receiver.requests[-1]
        assert live.headers["webhook-id"] == messages.message_id(str(live_id), str(ref))
        assert "replayed" not in json.loads(live.body)["data"]["metadata"]


def test_a_quarantined_callback_replayed_gets_the_missed_ones_in_order_with_their_ids():
    var = unique_var("quar")
    keep = manager.add_observer(var, record)  # a second observer: the variable's other deliveries go on
    ref = manager.add_observer(var, explode)
    ids = notify_all(var, 5)  # quarantined after 3 failures (the test settings); 2 more missed
    wait_for(lambda: len(received(keep)) == 5)
    assert Observer.objects.get(id=ref).quarantined_at is not None
    # The observer is fixed: its callback now records (the same row, another registered name).
    Observer.objects.filter(id=ref).update(callback=name_of(record))
    with pytest.raises(ReplayRefused, match="quarantined"):
        manager.replay(ref, since=1)
    manager.reenable_observer(ref)
    seq_of_third = manager.history(var).entries[2].seq

    replayed = manager.replay(ref, since=seq_of_third)

    assert (replayed.notifications, replayed.complete) == (3, True)
    rows = wait_for(lambda: len(received(ref)) == 3 and received(ref))
    kept = manager.history(var).entries[2:]
    assert sorted(ids) == sorted(entry.notification_id for entry in manager.history(var).entries)
    assert [row.metadata["notification_id"] for row in rows] == [entry.notification_id for entry in kept]
    assert [row.metadata["seq"] for row in rows] == [seq_of_third, seq_of_third + 1, seq_of_third + 2]
    assert all(row.metadata["replayed"] for row in rows)
    assert len(received(keep)) == 5  # to that one observer only


def test_a_long_replay_comes_page_after_page_in_seq_order():
    var = unique_var("long")
    ref = manager.add_observer(var, record)
    count = REPLAY_PAGE + REPLAY_PAGE // 2
    ids = notify_all(var, count)
    wait_for(lambda: len(received(ref)) == count)

    replayed = manager.replay(ref, since=1)

    assert replayed.notifications == count
    rows = wait_for(lambda: len(received(ref)) == 2 * count and received(ref)[count:])
    assert [row.metadata["seq"] for row in rows] == list(range(1, count + 1))
    assert sorted(row.metadata["notification_id"] for row in rows) == sorted(ids)


def test_a_glob_observer_is_replayed_from_a_time_over_each_of_its_variables():
    prefix = unique_var("globr")
    ref = manager.add_observer(f"{prefix}:*", record, glob=True)
    manager.notify_observers(f"{prefix}:a", 0, 1)
    wait_for(lambda: len(received(ref)) == 1)
    since = timezone.now()
    later = [manager.notify_observers(f"{prefix}:a", 1, 2), manager.notify_observers(f"{prefix}:b", 0, 1)]
    manager.notify_observers(f"{unique_var('other')}", 0, 1)
    wait_for(lambda: len(received(ref)) == 3)

    replayed = manager.replay(ref, since=since)

    assert (replayed.notifications, replayed.variables) == (2, 2)
    rows = wait_for(lambda: len(received(ref)) == 5 and received(ref)[3:])
    assert {row.metadata["notification_id"] for row in rows} == {str(n) for n in later}
    with pytest.raises(ReplayRefused, match="glob"):
        manager.replay(ref, since=1)


def test_bad_points_and_refs_are_refused_with_a_clear_error():
    var = unique_var("bad")
    ref = manager.add_observer(var, record)
    manager.notify_observers(var, 0, 1)
    wait_for(lambda: received(ref))
    with pytest.raises(ReplayRefused, match="no observer"):
        manager.replay(uuid.uuid4(), since=1)
    with pytest.raises(InvalidObserverRef):
        manager.replay("not-a-ref", since=1)
    with pytest.raises(ReplayRefused, match="in the future"):
        manager.replay(ref, since=timezone.now() + timedelta(minutes=1))
    with pytest.raises(ReplayRefused, match="the last seq of"):
        manager.replay(ref, since=2)
    with pytest.raises(ReplayRefused, match="time zone"):
        manager.replay(ref, since=datetime(2026, 1, 1))
    for wrong in (0, True, "1"):
        with pytest.raises(ReplayRefused):
            manager.replay(ref, since=wrong)  # type: ignore[arg-type]
    stream_forwarder = Observer.objects.create(var_id=var, callback=FORWARD_CALLBACK)
    with pytest.raises(ReplayRefused, match="Last-Event-ID"):
        manager.replay(stream_forwarder.id, since=1)
    expired = Owner.objects.create(name="gone", kind=Owner.Kind.LEASE, expires_at=timezone.now())
    orphan = Observer.objects.create(var_id=var, callback=name_of(record), owner=expired)
    with pytest.raises(ReplayRefused, match="dead"):
        manager.replay(orphan.id, since=1)
    assert manager.replay(ref, since=1).notifications == 1
    # Delivered before the test ends: a replay still running would hold the tables the teardown empties.
    assert wait_for(lambda: len(received(ref)) == 2)


def test_with_the_history_off_a_replay_is_refused(settings):
    ref = manager.add_observer(unique_var("off"), record)
    settings.OBSERVERS_HISTORY = False
    with pytest.raises(ReplayRefused, match="history is off"):
        manager.replay(ref, since=timezone.now())


def test_the_command_replays_and_refuses_bad_input():
    var = unique_var("cmd")
    ref = manager.add_observer(var, record)
    manager.notify_observers(var, 0, 1)
    manager.notify_observers(var, 1, 2)
    wait_for(lambda: len(received(ref)) == 2)
    out = io.StringIO()
    call_command("observers_replay_history", str(ref), "--since-seq", "2", stdout=out)
    assert f"queued 1 notifications of 1 variables for observer {ref}" in out.getvalue()
    wait_for(lambda: len(received(ref)) == 3)
    assert received(ref)[-1].new_value == manager.history(var).entries[1].new_value
    call_command("observers_replay_history", str(ref), "--since", "2000-01-01T00:00:00Z", stdout=out)
    wait_for(lambda: len(received(ref)) == 5)
    with pytest.raises(CommandError, match="zone"):
        call_command("observers_replay_history", str(ref), "--since", "2000-01-01T00:00:00")
    with pytest.raises(CommandError, match="no observer"):
        call_command("observers_replay_history", str(uuid.uuid4()), "--since-seq", "1")

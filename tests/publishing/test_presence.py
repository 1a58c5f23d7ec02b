"""The caller's answer to "has observers": the process's view, absence leases, and what an add waits for."""

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from observers_app import manager
from observers_app.models import Observer, PresenceView
from observers_app.publishing import presence, view
from observers_app.publishing.name_set import ObservedNames
from tests.conftest import start_client_process, wait_for, wait_ready
from tests.factories import unique_var
from tests.testapp.callbacks import record
from tests.testapp.models import Received

# Long enough that a notifier's "no" would still be believed for many notifies after the add.
LEASE_S = 1.0
# Views of the observed names: PostgreSQL only (elsewhere, absence leases).
views_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="views: PostgreSQL")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize(
    "views", [pytest.param(True, marks=views_only), False], ids=["views", "absence-leases"]
)
@pytest.mark.parametrize("glob", [False, True], ids=["exact", "glob"])
def test_a_notify_begun_after_add_observer_returned_reaches_the_observer(settings, glob, views):
    """Another process has just found the variable unobserved (its notify, a moment before the
    add): every notify it begins after add_observer returned must be delivered, although without
    the wait that process would still believe its "no observer" then."""
    settings.OBSERVERS_ABSENCE_TTL = LEASE_S
    settings.OBSERVERS_PRESENCE_VIEW = views
    var = unique_var("race")
    notifier = start_client_process("notify", var, "20", extra_env=_notifier_env(views))
    try:
        wait_ready(notifier)
        ref = manager.add_observer(f"{var[:-4]}*" if glob else var, record, glob=glob)
        returned_at = time.time()
        assert notifier.stdin is not None and notifier.stdout is not None
        notifier.stdin.write("stop\n")
        notifier.stdin.flush()
        began = json.loads(notifier.stdout.readline())
        assert notifier.wait(timeout=30) == 0  # its exit flushes the notifications it left to publish
    finally:
        if notifier.poll() is None:
            notifier.kill()
            notifier.wait()
    after = {i + 1 for i, started in began if started > returned_at}
    assert len(after) == 20
    wait_for(lambda: after <= set(Received.objects.filter(var_id=var).values_list("new_value", flat=True)))
    assert set(Received.objects.filter(var_id=var).values_list("observer_ref", flat=True)) == {ref}


def _notifier_env(views: bool) -> dict[str, str]:
    return {
        "OBSERVERS_ABSENCE_TTL": str(LEASE_S),
        "OBSERVERS_PRESENCE_VIEW_LEASE": str(LEASE_S),
        "OBSERVERS_PRESENCE_VIEW": "1" if views else "",
    }


@views_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("glob", [False, True], ids=["exact", "glob"])
def test_a_notify_to_a_name_never_asked_before_sees_an_add_that_returned(settings, glob):
    """Another process notifies a name of its own each time, each answered by its view from memory:
    every notify it begins after the add returned reaches the observer."""
    settings.OBSERVERS_PRESENCE_VIEW_LEASE = LEASE_S
    var = unique_var("distinct")
    count = 300
    notifier = start_client_process("distinct", var, str(count), extra_env=_notifier_env(True))
    try:
        wait_ready(notifier)
        assert notifier.stdin is not None and notifier.stdout is not None
        notifier.stdin.write("go\n")
        notifier.stdin.flush()
        if glob:
            refs = {manager.add_observer(f"{var}:*", record, glob=True)}
        else:
            refs = set(manager.add_observers([f"{var}:{i}" for i in range(1, count + 1)], record))
        returned_at = time.time()
        began = json.loads(notifier.stdout.readline())
        assert notifier.wait(timeout=30) == 0
    finally:
        if notifier.poll() is None:
            notifier.kill()
            notifier.wait()
    after = {i for i, started in began if started > returned_at and i > 0}
    assert after, "every notify began before the add returned: nothing was raced"
    delivered = Received.objects.filter(var_id__startswith=f"{var}:")
    wait_for(lambda: after <= set(delivered.values_list("new_value", flat=True)))
    assert set(delivered.values_list("observer_ref", flat=True)) <= refs


def loaded_view() -> view.View:
    """This process's view, once it answers from memory."""
    names = view.current()
    assert names is not None
    registered = PresenceView.objects.filter(id=names.id)
    wait_for(lambda: names.answer("anything") is not None and registered.exists(), timeout=10, interval=0.01)
    return names


@views_only
@pytest.mark.django_db(transaction=True)
def test_an_unobserved_name_never_asked_costs_no_query_once_the_view_is_loaded():
    loaded_view()
    manager.add_observer(observed := unique_var("seen"), record)
    manager.add_observer(unique_var("glob") + ":*", record, glob=True)
    names = [unique_var("nobody") for _ in range(50)]
    with CaptureQueriesContext(connection) as queries:
        answers = [presence.has_observers(name) for name in names]
        notified = [manager.notify_observers(name, 0, 1) for name in names]
        seen = presence.has_observers(observed)
    assert (answers, len(queries), seen) == ([False] * 50, 0, True)
    assert all(notification_id is not None for notification_id in notified)


@views_only
@pytest.mark.django_db(transaction=True)
def test_a_view_without_its_broker_link_asks_the_database():
    names = loaded_view()
    var = unique_var("behind")
    # Written behind the hub's back (no add told the view): only the database knows of it.
    Observer.objects.create(var_id=var, callback="tests.testapp.callbacks.record")
    assert names.answer(var) is False
    names.link.connection.sock.shutdown(socket.SHUT_RDWR)
    wait_for(lambda: names.answer(var) is not True and not names.loaded.is_set(), timeout=10, interval=0.01)
    with CaptureQueriesContext(connection) as queries:
        found = presence.has_observers(var)
    assert found is True
    assert len(queries) == 1
    # The view loads again, from the database: the name is in it.
    wait_for(lambda: names.answer(var) is True, timeout=10, interval=0.01)


@views_only
@pytest.mark.django_db(transaction=True)
def test_a_view_whose_row_is_deleted_loads_again():
    """An add that cannot tell the views deletes their rows: each stops answering and loads again."""
    names = loaded_view()
    var = unique_var("behind")
    Observer.objects.create(var_id=var, callback="tests.testapp.callbacks.record")
    assert names.answer(var) is False
    PresenceView.objects.all().delete()
    wait_for(lambda: names.answer(var) is True, timeout=10, interval=0.01)


@views_only
@pytest.mark.django_db(transaction=True)
def test_an_add_waits_for_no_lease(settings):
    """With a lease of a minute, adds and removals return at once, with or without a live view."""
    settings.OBSERVERS_ABSENCE_TTL = 60.0
    settings.OBSERVERS_PRESENCE_VIEW_LEASE = 60.0
    view.stop()
    started = time.monotonic()
    ref = manager.add_observer(var := unique_var(), record)  # no view anywhere
    loaded_view()
    refs = [manager.add_observer(unique_var(), record) for _ in range(5)]  # told to this process's view
    manager.add_observer(unique_var("glob") + ":*", record, glob=True)
    assert manager.remove_observer(var, ref)
    assert time.monotonic() - started < 30.0
    assert Observer.objects.filter(id__in=refs).count() == 5


@views_only
@pytest.mark.django_db(transaction=True)
def test_an_add_waits_for_a_silent_view_only_when_the_name_had_no_observer(settings):
    """A registered view that never acknowledges (its process hangs): a new name waits out its lease,
    a name that already has an observer tells nobody."""
    settings.OBSERVERS_PRESENCE_VIEW_LEASE = lease = 2.0
    view.stop()
    manager.add_observer(var := unique_var(), record)
    PresenceView.objects.create(expires_at=timezone.now() + timedelta(minutes=5))
    started = time.monotonic()
    manager.add_observer(var, record)
    known = time.monotonic() - started
    started = time.monotonic()
    manager.add_observer(unique_var(), record)
    new = time.monotonic() - started
    assert new >= lease
    assert known < lease


@views_only
@pytest.mark.django_db(transaction=True)
def test_an_add_holds_no_row_a_removal_waits_for_while_it_waits_itself():
    """A transaction adds to X, then removes X's older observer; meanwhile another add of W and X
    waits for X's count. The other add locks a row of each name already observed (X's older
    observer) only after every lock it waits for: both commit, no deadlock."""
    w, x = unique_var("w"), unique_var("x")  # W's count is taken before X's (name order)
    older = manager.add_observer(x, record)
    errors: list[Exception] = []

    def other_add() -> None:
        try:
            manager.add_observers([w, x], record)
        except Exception as exc:  # noqa: BLE001: the test reports it
            errors.append(exc)
        finally:
            connection.close()

    other = threading.Thread(target=other_add)
    with transaction.atomic():
        manager.add_observer(x, record)  # X's count row locked until this commit
        other.start()
        wait_for(lambda: _lock_waits() >= 1, timeout=10)  # the other add waits for X's count
        assert manager.remove_observer(x, older)
    other.join(timeout=30)
    assert not other.is_alive() and not errors, errors
    assert Observer.objects.filter(var_id=x).count() == 2 and not Observer.objects.filter(id=older).exists()


def _lock_waits() -> int:
    """Sessions of this database waiting for a lock, read on a connection of its own."""
    counts: list[int] = []

    def read() -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )
            counts.append(cursor.fetchone()[0])
        connection.close()

    reader = threading.Thread(target=read)
    reader.start()
    reader.join()
    return counts[0]


@views_only
@pytest.mark.django_db(transaction=True)
def test_a_view_that_learned_more_names_than_it_loaded_loads_again(monkeypatch):
    """Its memory follows the names observed: what it learned is loaded into its array afresh."""
    monkeypatch.setattr(view, "RELOAD_AFTER", 5)
    names = loaded_view()
    added = [unique_var("learned") for _ in range(20)]
    manager.add_observers(added, record)
    wait_for(lambda: not names.names.added and len(names.names.hashes) >= 20, timeout=10, interval=0.01)
    wait_for(lambda: names.answer("anything") is not None, timeout=10, interval=0.01)
    assert all(names.answer(name) for name in added)


@views_only
@pytest.mark.django_db(transaction=True)
def test_a_view_whose_load_outlasts_its_lease_keeps_its_row_and_acknowledges_adds(
    settings, monkeypatch, caplog
):
    """A load longer than a lease (a million names take seconds): the view keeps its row and
    acknowledges the changes queued meanwhile, so it is neither expired by an add nor waited out."""
    settings.OBSERVERS_PRESENCE_VIEW_LEASE = lease = 1.0
    caplog.set_level(logging.WARNING, logger=view.__name__)
    view.stop()
    manager.add_observers([unique_var("loaded") for _ in range(60)], record)
    monkeypatch.setattr(view, "LOAD_CHUNK", 1)
    load_names, loading = view.load_names, threading.Event()

    def slow_load(between_chunks: Callable[[], None]) -> ObservedNames:
        def paced() -> None:  # 60 names: a load of 3 s
            loading.set()
            between_chunks()
            time.sleep(0.05)

        return load_names(between_chunks=paced)

    monkeypatch.setattr(view, "load_names", slow_load)
    slow = view.View()
    slow.start()
    try:
        assert loading.wait(10)
        time.sleep(lease * 1.5)  # past the lease its row was written with
        started = time.monotonic()
        manager.add_observer(var := unique_var("during-load"), record)
        waited = time.monotonic() - started
        wait_for(lambda: slow.answer("anything") is not None, timeout=30, interval=0.01)
        assert slow.answer(var) is True
        assert waited < lease  # acknowledged while loading, not waited out
        assert not [r for r in caplog.records if "presence_view_down" in r.getMessage()]
    finally:
        slow.stop()


def absence_waits(callbacks: list) -> int:
    return sum(callback is presence._wait_out_absence_leases for callback in callbacks)


@pytest.mark.django_db(transaction=True)
def test_a_transaction_waits_once_after_its_commit(settings, django_capture_on_commit_callbacks):
    settings.OBSERVERS_PRESENCE_VIEW = False
    with transaction.atomic(), django_capture_on_commit_callbacks() as callbacks:
        manager.add_observer(unique_var(), record)
        manager.add_observers([unique_var(), unique_var()], record)
        manager.add_observer(unique_var("glob") + ":*", record, glob=True)
    assert absence_waits(callbacks) == 1
    assert Observer.objects.count() == 4


@pytest.mark.django_db(transaction=True)
def test_an_add_after_a_rolled_back_one_still_waits(settings, django_capture_on_commit_callbacks):
    settings.OBSERVERS_PRESENCE_VIEW = False
    with transaction.atomic(), django_capture_on_commit_callbacks() as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            manager.add_observer(unique_var(), record)
            raise RuntimeError("the savepoint is rolled back, and its on-commit wait with it")
        kept = manager.add_observer(unique_var(), record)
    assert absence_waits(callbacks) == 1
    assert list(Observer.objects.values_list("id", flat=True)) == [kept]


@pytest.mark.django_db(transaction=True)
def test_a_lease_is_believed_for_its_time_then_asked_again(settings):
    settings.OBSERVERS_PRESENCE_VIEW = False
    settings.OBSERVERS_ABSENCE_TTL = 0.2
    var = unique_var()
    assert presence.has_observers(var) is False
    # Written behind the hub's back, so no wait: the lease still answers "no" until it expires.
    Observer.objects.create(var_id=var, callback="tests.testapp.callbacks.record")
    assert presence.has_observers(var) is False
    wait_for(lambda: presence.has_observers(var), timeout=5, interval=0.01)

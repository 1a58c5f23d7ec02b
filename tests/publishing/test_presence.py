"""The caller's cache of "has observers": absence leases, and what an add waits for."""

import json
import time

import pytest
from django.db import transaction

from observers_app import manager
from observers_app.models import Observer
from observers_app.publishing import presence
from tests.conftest import start_client_process, wait_for, wait_ready
from tests.factories import unique_var
from tests.testapp.callbacks import record
from tests.testapp.models import Received

# Long enough that a notifier's "no" would still be believed for many notifies after the add.
LEASE_S = 1.0


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("glob", [False, True], ids=["exact", "glob"])
def test_a_notify_begun_after_add_observer_returned_reaches_the_observer(settings, glob):
    """Another process has just found the variable unobserved (its notify, a moment before the
    add): every notify it begins after add_observer returned must be delivered, although without
    the wait that process would still believe its "no observer" then."""
    settings.OBSERVERS_ABSENCE_TTL = LEASE_S
    var = unique_var("race")
    notifier = start_client_process("notify", var, "20", extra_env={"OBSERVERS_ABSENCE_TTL": str(LEASE_S)})
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


def absence_waits(callbacks: list) -> int:
    return sum(callback is presence._wait_out_absence_leases for callback in callbacks)


@pytest.mark.django_db(transaction=True)
def test_a_transaction_waits_once_after_its_commit(django_capture_on_commit_callbacks):
    with transaction.atomic(), django_capture_on_commit_callbacks() as callbacks:
        manager.add_observer(unique_var(), record)
        manager.add_observers([unique_var(), unique_var()], record)
        manager.add_observer(unique_var("glob") + ":*", record, glob=True)
    assert absence_waits(callbacks) == 1
    assert Observer.objects.count() == 4


@pytest.mark.django_db(transaction=True)
def test_an_add_after_a_rolled_back_one_still_waits(django_capture_on_commit_callbacks):
    with transaction.atomic(), django_capture_on_commit_callbacks() as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            manager.add_observer(unique_var(), record)
            raise RuntimeError("the savepoint is rolled back, and its on-commit wait with it")
        kept = manager.add_observer(unique_var(), record)
    assert absence_waits(callbacks) == 1
    assert list(Observer.objects.values_list("id", flat=True)) == [kept]


@pytest.mark.django_db(transaction=True)
def test_a_lease_is_believed_for_its_time_then_asked_again(settings):
    settings.OBSERVERS_ABSENCE_TTL = 0.2
    var = unique_var()
    assert presence.has_observers(var) is False
    # Written behind the hub's back, so no wait: the lease still answers "no" until it expires.
    Observer.objects.create(var_id=var, callback="tests.testapp.callbacks.record")
    assert presence.has_observers(var) is False
    wait_for(lambda: presence.has_observers(var), timeout=5, interval=0.01)

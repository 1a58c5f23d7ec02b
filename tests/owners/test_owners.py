"""Owners, their deaths and the sweep: real processes, the real broker and database."""

import functools
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from observers_app import conf, manager, wiring
from observers_app.exceptions import OwnerClosed, OwnerDead, UnknownOwner
from observers_app.models import OWNER_LOCK_NAMESPACE, Observer, Owner, Removal
from observers_app.tasks import sweep
from tests.conftest import database_url, start_client_process, wait_for, wait_ready
from tests.factories import make_observers, unique_var
from tests.testapp.callbacks import explode, record
from tests.testapp.models import Received

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


def death_deadline() -> float:
    """The issue's bound: 1 s on PostgreSQL, 5 s on SQLite."""
    return 1.0 if connection.vendor == "postgresql" else 5.0


def received_at_least(var_id: str, count: int) -> bool:
    return Received.objects.filter(var_id=var_id).count() >= count


def reason_of(ref) -> str:
    removal = manager.removal_of(ref)
    assert removal is not None, f"no removal recorded for {ref}"
    return removal["reason"]


def poll_within(deadline_s: float, predicate) -> float:
    """Poll ``predicate`` until true; fail past ``deadline_s``. Returns the seconds it took."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < deadline_s, f"not within {deadline_s} s"
        time.sleep(0.01)
    return time.monotonic() - started


def test_observers_of_a_killed_process_stop_counting_and_being_called():
    var = unique_var("crash")
    [durable] = make_observers(var, 1)
    process = start_client_process("hold", var, "3")
    owner_id = wait_ready(process)
    assert manager.observer_count(var) == 4
    assert manager.get_stats()["monitored_processes"] >= 1

    process.send_signal(signal.SIGKILL)
    process.wait()
    poll_within(death_deadline(), lambda: manager.observer_count(var) == 1)
    assert manager.total_observers() == 1

    manager.notify_observers(var, 1, 2)
    [call] = wait_for(lambda: list(Received.objects.filter(var_id=var)))
    assert call.observer_ref == durable
    assert Observer.objects.filter(owner_id=owner_id).count() == 3  # rows stay until the sweep

    # Its process may live and take its lock again (a database restart): kept for the grace period.
    assert manager.sweep_dead_observers()["removed_owner_died"] == 0
    assert Observer.objects.filter(owner_id=owner_id).count() == 3
    grace = timedelta(seconds=conf.owner_grace() + 1)
    Owner.objects.filter(id=owner_id).update(dead_since=timezone.now() - grace)
    result = manager.sweep_dead_observers()
    assert result["removed_owner_died"] == 3
    assert not Observer.objects.filter(owner_id=owner_id).exists()
    assert not Owner.objects.filter(id=owner_id).exists()
    assert {r.reason for r in Removal.objects.filter(owner_ref=owner_id)} == {"owner_died"}


def test_observers_of_a_process_that_exits_cleanly_are_gone_at_once():
    var = unique_var("exit")
    process = start_client_process("exit", var, "5")
    owner_id = wait_ready(process)
    assert process.wait(timeout=30) == 0
    poll_within(1.0, lambda: not Observer.objects.filter(var_id=var).exists())
    assert Removal.objects.filter(owner_ref=owner_id, reason="owner_closed").count() == 5


def test_a_lease_that_stops_heartbeating_expires():
    var = unique_var("lease")
    lease = manager.open_owner("websocket", ttl_s=1.0)
    manager.add_observer(var, record, owner=lease)
    time.sleep(0.5)
    lease.heartbeat()
    assert manager.observer_count(var) == 1
    poll_within(3.0, lambda: manager.observer_count(var) == 0)
    with pytest.raises(OwnerDead):
        lease.heartbeat()
    with pytest.raises(OwnerDead):
        manager.add_observer(var, record, owner=lease)
    assert manager.sweep_dead_observers()["removed_swept"] == 1
    assert reason_of(Removal.objects.get(var_id=var).observer_ref) == "swept"


def test_a_closed_lease_has_no_observers_on_return():
    var = unique_var("closed")
    with manager.open_owner("session", ttl_s=60) as lease:
        refs = [manager.add_observer(var, record, owner=lease) for _ in range(3)]
        assert manager.observer_count(var) == 3
    assert Observer.objects.filter(var_id=var).count() == 0
    assert reason_of(refs[0]) == "owner_closed"
    with pytest.raises(OwnerClosed, match="open a new one"):
        manager.add_observer(var, record, owner=lease)


def test_unknown_owner_is_refused():
    with pytest.raises(UnknownOwner):
        manager.add_observer(unique_var(), record, owner=uuid.uuid4())
    with pytest.raises(UnknownOwner):
        manager.add_observer(unique_var(), record, owner="not-an-owner")
    assert Observer.objects.count() == 0


def test_the_sweep_removes_10000_dead_observers_in_batches_and_keeps_live_ones():
    live_lease = manager.open_owner("live", ttl_s=300)
    live = [manager.add_observer(unique_var("live"), record, owner=live_lease) for _ in range(5)]
    durable = make_observers(unique_var("durable"), 5)
    dead_owners = [
        Owner.objects.create(name=f"dead {i}", kind="lease", expires_at=timezone.now() - timedelta(seconds=1))
        for i in range(10)
    ]
    Observer.objects.bulk_create(
        [
            Observer(var_id=f"dead:{i % 7}", callback="tests.testapp.callbacks.record", owner=owner)
            for i, owner in enumerate(dead_owners * 1000)
        ],
        batch_size=2000,
    )
    before = manager.get_stats()

    result = manager.sweep_dead_observers(batch_size=700)

    assert result["removed_swept"] == 10_000
    assert result["owners_removed"] == 10
    assert set(Observer.objects.values_list("id", flat=True)) == set(live) | set(durable)
    assert Owner.objects.filter(id__in=[o.id for o in dead_owners]).count() == 0
    after = manager.get_stats()
    assert after["cleanup_runs"] == before["cleanup_runs"] + 1
    assert after["observers_removed"] == before["observers_removed"] + 10_000
    assert Removal.objects.filter(reason="swept").count() == 10_000


def test_the_sweep_runs_as_a_celery_task_on_the_worker():
    dead = Owner.objects.create(name="dead", kind="lease", expires_at=timezone.now() - timedelta(seconds=1))
    Observer.objects.create(var_id=unique_var(), callback="tests.testapp.callbacks.record", owner=dead)
    # On the hub's queue, as beat sends it: the host's default queue ("celery") is consumed by every
    # worker on a shared broker, not only this test's.
    sweep.apply_async(queue=wiring.deliver_queue().name)
    wait_for(lambda: not Owner.objects.filter(id=dead.id).exists())
    assert Observer.objects.count() == 0


def test_four_processes_adding_removing_and_notifying_leave_every_count_exact():
    shared = unique_var("shared")
    private = [unique_var(f"private{i}") for i in range(4)]
    private_refs = {var: set(make_observers(var, 5)) for var in private}
    before = manager.get_stats()

    processes = [start_client_process("churn", shared, "50", var) for var in private]
    for process in processes:
        wait_ready(process)
        assert process.wait(timeout=60) == 0

    assert manager.observer_count(shared) == 4 * 25
    stats = manager.get_stats()
    assert stats["observers_added"] - before["observers_added"] == 200
    assert stats["observers_removed"] - before["observers_removed"] == 100
    for var, refs in private_refs.items():
        wait_for(functools.partial(received_at_least, var, 50))
        pairs = [(c.observer_ref, c.metadata["notification_id"]) for c in Received.objects.filter(var_id=var)]
        assert len(pairs) == len(set(pairs)) == 50
        assert {ref for ref, _ in pairs} == refs
    wait_for(lambda: manager.get_stats()["notifications_sent"] - before["notifications_sent"] == 200)


def test_an_observer_failing_n_times_in_a_row_is_quarantined_and_can_be_reenabled(settings):
    var = unique_var("flaky")
    bad = manager.add_observer(var, explode)
    good = manager.add_observer(var, record)
    limit = settings.OBSERVERS_QUARANTINE_AFTER

    def notify_and_wait(n: int) -> None:
        manager.notify_observers(var, n, n + 1)
        wait_for(lambda: Received.objects.filter(var_id=var, new_value=n + 1).exists())

    for n in range(limit):
        notify_and_wait(n)
    observer = wait_for(lambda: Observer.objects.filter(id=bad, quarantined_at__isnull=False).first())
    assert observer.failures == limit
    assert "callback failed on purpose" in observer.last_error
    assert manager.observer_count(var) == 1
    assert reason_of(bad) == "quarantined"
    [shown] = [o for o in manager.inspect_variable(var)["observers"] if o["ref"] == bad]
    assert shown["quarantined"] is True

    notify_and_wait(limit)  # quarantined: not called
    assert Observer.objects.get(id=bad).failures == limit

    assert manager.reenable_observer(bad) is True
    assert manager.observer_count(var) == 2
    notify_and_wait(limit + 1)  # called again, fails again, straight back to quarantine
    wait_for(lambda: Observer.objects.filter(id=bad, quarantined_at__isnull=False).exists())
    assert Received.objects.filter(var_id=var, observer_ref=good).count() == limit + 2


def test_celery_beat_runs_the_sweep_on_its_schedule(tmp_path):
    dead = Owner.objects.create(name="dead", kind="lease", expires_at=timezone.now() - timedelta(seconds=1))
    Observer.objects.create(var_id=unique_var(), callback="tests.testapp.callbacks.record", owner=dead)
    runs_before = manager.get_stats()["cleanup_runs"]
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "OBSERVERS_SWEEP_INTERVAL": "1",
    }
    beat = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "project",
            "beat",
            "--schedule",
            str(tmp_path / "beat-schedule"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: not Owner.objects.filter(id=dead.id).exists(), timeout=30)
        wait_for(lambda: manager.get_stats()["cleanup_runs"] >= runs_before + 2, timeout=30)
    finally:
        beat.terminate()
        beat.wait(timeout=30)
    assert Observer.objects.count() == 0


@pytest.mark.skipif(connection.vendor != "postgresql", reason="advisory locks are PostgreSQL's")
def test_a_live_process_whose_lock_session_was_cut_takes_its_lock_again_and_keeps_its_observers():
    var = unique_var("relock")
    process = start_client_process("hold", var, "2")
    try:
        owner_id = wait_ready(process)
        owner = Owner.objects.get(id=owner_id)
        with connection.cursor() as cursor:  # as a database restart does, for this one session
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                "AND classid = %s AND objid = %s AND objsubid = 2",
                [OWNER_LOCK_NAMESPACE, owner.lock_key],
            )
        poll_within(death_deadline(), lambda: manager.observer_count(var) == 0)
        assert manager.sweep_dead_observers()["removed_owner_died"] == 0  # within the grace period

        poll_within(5.0, lambda: manager.observer_count(var) == 2)  # its lock is taken again
        manager.sweep_dead_observers()
        assert Owner.objects.get(id=owner_id).dead_since is None
        assert Observer.objects.filter(owner_id=owner_id).count() == 2
    finally:
        process.kill()
        process.wait()


def test_a_lease_written_by_a_server_whose_clock_is_an_hour_behind_lives_its_ttl(monkeypatch):
    """Expiry is written and judged by the database's clock: a skewed application clock neither
    shortens a lease nor lets the sweep take its observers."""
    var = unique_var("skewed")
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() - timedelta(hours=1))
    with manager.open_owner("skewed", ttl_s=30) as lease:
        ref = manager.add_observer(var, record, owner=lease)
        lease.heartbeat()
        manager.sweep_dead_observers()
        assert Observer.objects.filter(id=ref).exists()
        assert Owner.objects.alive().filter(id=lease.id).exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="advisory locks are PostgreSQL's")
def test_a_process_whose_owner_was_swept_lets_its_lock_go():
    """Cut off longer than OBSERVERS_OWNER_GRACE, a process is swept (its owner closed, its observers
    removed); its lock keeper, back, finds it closed and lets the lock go (the process gets a new
    owner from process_owner(), and the process_owner_lost signal)."""
    var = unique_var("swept")
    process = start_client_process("hold", var, "2")
    try:
        owner_id = wait_ready(process)
        lock_key = Owner.objects.get(id=owner_id).lock_key
        # What the sweep does to an owner dead past its grace (it closes it before removing its observers).
        Owner.objects.filter(id=owner_id).update(closed_at=timezone.now())

        def lock_held() -> bool:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND classid = %s AND objid = %s",
                    [OWNER_LOCK_NAMESPACE, lock_key],
                )
                return bool(cursor.fetchone()[0])

        assert lock_held()
        poll_within(5.0, lambda: not lock_held())
    finally:
        process.kill()
        process.wait()

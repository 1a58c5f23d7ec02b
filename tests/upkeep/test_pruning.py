"""The sweep prunes what nobody needs any more, in bounded batches, and never a row still in use."""

from datetime import timedelta

import pytest
from django.utils import timezone

from observers_app import manager
from observers_app.models import Latest, Removal, Variable, VariableState
from observers_app.sources import sessions
from tests.factories import unique_var
from tests.testapp.callbacks import record

pytestmark = pytest.mark.django_db(transaction=True)

LONG_AGO = timezone.now() - timedelta(days=30)


def test_states_of_variables_nobody_observes_are_pruned_and_observed_ones_keep_their_seq():
    observed = [unique_var("kept") for _ in range(10)]
    for var in observed:
        manager.add_observer(var, record)
    for _ in range(200):
        var = unique_var("cycled")
        manager.remove_observer(var, manager.add_observer(var, record))
    globbed, forgotten = unique_var("globbed"), unique_var("forgotten")
    manager.add_observer("globbed:*", record, glob=True)
    VariableState.objects.create(var_id=globbed, seq=5, last_notified_at=LONG_AGO)
    VariableState.objects.create(var_id=forgotten, seq=5, last_notified_at=LONG_AGO)
    VariableState.objects.filter(var_id=observed[0]).update(seq=7, last_notified_at=LONG_AGO)
    recent = unique_var("recent")
    VariableState.objects.create(var_id=recent, seq=3, last_notified_at=timezone.now())
    assert VariableState.objects.count() == 10 + 200 + 1 + 3

    result = manager.sweep(batch_size=7)

    assert result["states_pruned"] == 201
    remaining = set(VariableState.objects.values_list("var_id", flat=True))
    assert remaining == {*observed, "globbed:*", globbed, recent}
    assert VariableState.objects.get(var_id=observed[0]).seq == 7
    assert VariableState.objects.get(var_id=globbed).seq == 5


def test_idle_coalescing_mailboxes_without_coalescing_observers_are_pruned():
    observed, globbed, waiting, leased, orphan = (
        unique_var(p) for p in ("obs", "glb", "wait", "lease", "orph")
    )
    manager.add_observer(observed, record, coalesce=True)
    manager.add_observer(f"{globbed[:4]}*", record, glob=True, coalesce=True)
    Latest.objects.create(var_id=observed, delivered_seq=4, has_delivered=True)
    Latest.objects.create(var_id=globbed, delivered_seq=4, has_delivered=True)
    in_a_minute = timezone.now() + timedelta(minutes=1)  # a live worker is delivering it
    Latest.objects.create(var_id=waiting, pending={"seq": 9}, lease_until=in_a_minute, lease_holder="y")
    Latest.objects.create(var_id=leased, lease_until=in_a_minute, lease_holder="x")
    for n in range(20):
        Latest.objects.create(var_id=f"{orphan}:{n}", delivered_seq=2, has_delivered=True)

    assert manager.sweep(batch_size=7)["mailboxes_pruned"] == 20

    assert set(Latest.objects.values_list("var_id", flat=True)) == {observed, globbed, waiting, leased}


def test_session_tombstones_past_their_retention_are_pruned():
    old, recent, alive = (unique_var(p).replace(":", "-") for p in ("old", "recent", "alive"))
    for session in (old, recent, alive):
        sessions.set_variable(session, "x", 1)
    sessions.delete_variable(old, "x")
    sessions.delete_variable(recent, "x")
    Variable.objects.filter(session_id=old).update(updated_at=LONG_AGO)

    assert manager.sweep()["tombstones_pruned"] == 1

    assert set(Variable.objects.values_list("session_id", flat=True)) == {recent, alive}
    assert sessions.set_variable(old, "x", 2) == 1  # set again after pruning: version from 1


def test_removal_records_past_their_retention_or_beyond_the_cap_are_pruned(settings):
    settings.OBSERVERS_REMOVAL_MAX_ROWS = 50
    now = timezone.now()
    Removal.objects.bulk_create(
        Removal(
            observer_ref=f"00000000-0000-0000-0000-{n:012d}",
            var_id="v",
            callback="c",
            reason="removed",
            removed_at=now - timedelta(minutes=n),
        )
        for n in range(120)
    )
    Removal.objects.bulk_create(
        Removal(
            observer_ref=f"10000000-0000-0000-0000-{n:012d}",
            var_id="v",
            callback="c",
            reason="removed",
            removed_at=LONG_AGO,
        )
        for n in range(5)
    )

    manager.sweep(batch_size=7)

    assert Removal.objects.count() == 50
    assert Removal.objects.filter(removed_at__lt=now - timedelta(minutes=49, seconds=30)).count() == 0

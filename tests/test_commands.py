"""The terminal: stats, inspect and sweep commands print what the hub holds."""

import logging
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from observers_app import manager
from observers_app.models import Observer, Owner
from tests.testapp.callbacks import explode, record

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_observers_stats_prints_every_figure():
    manager.add_observer("cmd:stats", record)
    output = run("observers_stats")
    for name in manager.get_stats():
        assert name in output
    assert any(line.split()[-1] == "1" for line in output.splitlines() if line.startswith("observers_added"))


def test_observers_inspect_prints_the_observers():
    ref = manager.add_observer("cmd:inspect", record)
    failing = manager.add_observer("cmd:inspect", explode)
    Observer.objects.filter(id=failing).update(failures=2, last_error="RuntimeError: boom")
    output = run("observers_inspect", "cmd:inspect")
    assert "cmd:inspect: 2 observers called" in output
    assert str(ref) in output and "tests.testapp.callbacks.record" in output
    assert f"last error of {failing}: RuntimeError: boom" in output


def test_observers_sweep_prints_what_it_removed():
    dead = Owner.objects.create(name="gone", kind="lease", expires_at=timezone.now() - timedelta(seconds=1))
    Observer.objects.create(var_id="cmd:sweep", callback="tests.testapp.callbacks.record", owner=dead)
    output = run("observers_sweep")
    assert "removed_swept" in output
    assert [line.split()[-1] for line in output.splitlines() if line.startswith("removed_swept")] == ["1"]
    assert not Owner.objects.exists()


def test_sweeps_quarantines_and_callback_errors_write_structured_log_lines(caplog, settings):
    from observers_app.worker import delivery

    caplog.set_level(logging.INFO, logger="observers_app")
    manager.sweep_dead_observers()
    failing = manager.add_observer("cmd:logs", explode)
    Observer.objects.filter(id=failing).update(failures=settings.OBSERVERS_QUARANTINE_AFTER - 1)
    notification = {
        "var_id": "cmd:logs",
        "old_value": 1,
        "new_value": 2,
        "metadata": None,
        "notification_id": "n",
        "seq": 1,
        "notified_at": 0.0,
    }
    delivery.deliver(notification, after=None, upto=failing, globs=[])
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("event=sweep removed=0 ") for line in lines)
    assert any(line.startswith(f"event=callback_failed observer={failing} ") for line in lines)
    assert any(line.startswith(f"event=observer_quarantined observer={failing} ") for line in lines)

"""The terminal: stats, inspect and sweep commands print what the hub holds."""

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

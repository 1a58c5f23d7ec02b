"""Telemetry: events sent by the hub, the Prometheus endpoint fed by them, and Flower seeing the tasks."""

import json
import os
import time
import urllib.request
from pathlib import Path

import pytest
from django.test import Client

from observers_app import conf, manager, signals, wiring
from tests.conftest import running_flower, wait_for
from tests.factories import make_observers, unique_var
from tests.testapp.callbacks import record
from tests.testapp.models import Received

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


def test_events_for_add_publish_and_remove_carry_their_arguments():
    seen: list[tuple[str, dict]] = []
    watched = {
        name: getattr(signals, name)
        for name in ("observer_added", "observer_removed", "notification_published")
    }
    names_of = {signal: name for name, signal in watched.items()}

    def receiver(sender, signal, **kwargs):
        seen.append((names_of[signal], kwargs))

    for signal in watched.values():
        signal.connect(receiver)
    try:
        var = unique_var("ev")
        ref = manager.add_observer(var, record)
        manager.notify_observers(var, 1, 2)
        manager.notify_observers(unique_var("nobody"), 1, 2)
        manager.remove_observer(var, ref)
    finally:
        for signal in watched.values():
            signal.disconnect(receiver)
    names = [name for name, _ in seen]
    assert names == ["observer_added", "notification_published", "notification_published", "observer_removed"]
    assert seen[0][1]["ref"] == ref and seen[0][1]["var_id"] == var
    assert seen[1][1]["published"] is True and seen[2][1]["published"] is False
    assert seen[1][1]["duration_s"] > 0
    assert seen[3][1]["reason"] == "removed"


def metric(text: str, name: str) -> float:
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name)]
    return sum(values)


def test_metrics_endpoint_merges_the_worker_processes_samples():
    var = unique_var("metrics")
    make_observers(var, 3)
    before = Client().get("/observers/metrics").content.decode()
    manager.notify_observers(var, 1, 2)
    wait_for(lambda: Received.objects.filter(var_id=var).count() == 3)

    def after() -> str:
        return Client().get("/observers/metrics").content.decode()

    wait_for(
        lambda: (
            metric(after(), 'observers_callbacks_total{outcome="ok"}')
            >= metric(before, 'observers_callbacks_total{outcome="ok"}') + 3
        )
    )
    text = after()
    assert metric(text, "observers_fanout_width_count") >= 1
    assert metric(text, "observers_notify_to_callback_seconds_count") >= 1
    assert metric(text, 'observers_notify_seconds_count{published="true"}') >= 1


def test_metrics_endpoint_answers_while_a_process_is_creating_its_file():
    manager.notify_observers(unique_var("nobody"), 1, 2)
    starting = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]) / "gauge_all_999999.db"
    starting.touch()  # opened by a starting process, not yet sized
    try:
        response = Client().get("/observers/metrics")
    finally:
        starting.unlink()

    assert response.status_code == 200
    assert metric(response.content.decode(), 'observers_notify_seconds_count{published="false"}') >= 1


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_flower_sees_the_hubs_tasks():
    with running_flower(FLOWER_UNAUTHENTICATED_API="true") as base:

        def up() -> bool:
            try:
                get_json(f"{base}/api/tasks?limit=1")
                return True
            except OSError:
                return False

        wait_for(up, timeout=30)
        # Flower answers HTTP before its event receiver is subscribed: wait until it sees a task.
        warmup = unique_var("flower-warmup")
        make_observers(warmup, 1)

        def sees_tasks() -> bool:
            manager.notify_observers(warmup, 0, time.time())
            time.sleep(0.5)
            return bool(get_json(f"{base}/api/tasks?limit=1"))

        wait_for(sees_tasks, timeout=30)
        var = unique_var("flower")
        observers = conf.batch_size() + 50  # two pages: a dispatch and a deliver task
        make_observers(var, observers)
        notification_id = manager.notify_observers(var, 1, 2)
        wait_for(lambda: Received.objects.filter(var_id=var).count() == observers)

        def names() -> set[str]:
            tasks = get_json(f"{base}/api/tasks?limit=1000").values()
            return {t["name"] for t in tasks if notification_id in (t.get("args") or "")}

        assert wait_for(lambda: {wiring.DISPATCH_TASK, wiring.DELIVER_TASK} <= names(), timeout=20)

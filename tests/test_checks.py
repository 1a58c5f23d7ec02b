"""System checks: where the host's Celery configuration would defeat the hub."""

from collections.abc import Iterator
from typing import Any

import django
import pytest
from celery import Celery, current_app
from django.core.checks import run_checks
from django.test.utils import isolate_apps
from kombu import Queue

from observers_app import checks, wiring
from observers_app.sources import model_fields

SETTINGS = ("task_default_queue", "task_queues", "task_always_eager", "task_routes", "accept_content")


@pytest.fixture
def celery_conf() -> Iterator[Any]:
    """The host's Celery configuration, restored after the test."""
    conf = current_app.conf
    keys = [*SETTINGS, *(f"CELERY_{name.upper()}" for name in SETTINGS)]
    saved = {key: conf[key] for key in keys if key in conf}
    yield conf
    for key in keys:
        conf.pop(key, None)
    conf.update(saved)


def set_conf(conf: Any, **values: Any) -> None:
    """Set Celery settings as a host's CELERY_-prefixed Django settings do (Celery 5.5 reads those
    first), and under their own names."""
    conf.update({**values, **{f"CELERY_{name.upper()}": value for name, value in values.items()}})


def ids(messages: list[Any]) -> list[str]:
    return sorted(message.id for message in messages)


def test_the_example_configuration_passes():
    assert ids(checks.check_celery_wiring()) == []
    assert ids(checks.check_celery_serialization()) == []


def test_a_default_queue_that_is_the_hubs_is_an_error(celery_conf: Any):
    set_conf(celery_conf, task_default_queue=wiring.dispatch_queue().name)
    assert ids(checks.check_celery_wiring()) == ["observers.E004"]


def test_declaring_the_hubs_queues_is_an_error(celery_conf: Any):
    set_conf(celery_conf, task_queues=(Queue("celery"), Queue(wiring.deliver_queue().name)))
    messages = checks.check_celery_wiring()
    assert ids(messages) == ["observers.E005"]
    assert wiring.deliver_queue().name in messages[0].msg


def test_eager_mode_and_routes_for_the_hubs_tasks_are_warned(celery_conf: Any):
    routes = {"observers.*": {"queue": "elsewhere"}, "mysite.*": {"queue": "mine"}}
    set_conf(celery_conf, task_always_eager=True, task_routes=routes)
    messages = checks.check_celery_wiring()
    assert ids(messages) == ["observers.W002", "observers.W004"]
    assert str(sorted(wiring.TASKS)) in messages[1].msg


def test_pickle_is_an_error(celery_conf: Any):
    set_conf(celery_conf, accept_content=["json", "pickle"])
    assert ids(checks.check_celery_serialization()) == ["observers.E002"]


def test_no_celery_app_is_warned(monkeypatch: pytest.MonkeyPatch):
    fallback = Celery("default", fixups=[], set_as_current=False)  # what Celery falls back to
    monkeypatch.setattr(checks, "_celery_app", lambda: fallback)
    assert ids(checks.check_celery_wiring()) == ["observers.W003"]


def test_the_hubs_router_sends_its_tasks_to_its_queues_and_leaves_the_hosts_alone():
    router = current_app.amqp.router
    for name in wiring.TASKS:
        assert router.route({}, name)["queue"].name == wiring.queue_for(name).name
    assert router.route({}, "mysite.tasks.anything")["queue"].name == current_app.conf.task_default_queue


@pytest.mark.skipif(django.VERSION < (6, 1), reason="database-level on_delete is new in Django 6.1")
@isolate_apps("tests.testapp")
def test_an_observed_model_deleted_by_the_database_alone_is_warned():
    from django.db import models

    class Parent(models.Model):  # noqa: DJ008
        class Meta:
            app_label = "testapp"

    class Child(models.Model):  # noqa: DJ008
        parent = models.ForeignKey(Parent, on_delete=models.DB_CASCADE)
        status = models.CharField(max_length=10)

        class Meta:
            app_label = "testapp"

    model_fields.observe_model(Child, fields=["status"])
    try:
        messages = checks.check_database_on_delete()
    finally:
        model_fields._observed.pop(Child)
    assert ids(messages) == ["observers.W006"]
    assert "testapp.Child.parent" in messages[0].msg and "DB_CASCADE" in messages[0].msg


def test_observed_models_with_python_level_on_delete_pass():
    assert ids(checks.check_database_on_delete()) == []


@pytest.mark.django_db
def test_no_model_of_the_hub_warns_on_this_database():
    """A fresh SQLite host's first migrate and check show nothing from the hub (no covering index
    declared where only PostgreSQL can use one: models.W040)."""
    hub = [
        m
        for m in run_checks(include_deployment_checks=False, databases=["default"])
        if "observers_app" in str(m.obj)
    ]
    assert hub == []

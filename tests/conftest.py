"""Shared fixtures: a real Celery worker on the real broker, sharing the test database; integration marker."""

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connection

from tests.worker_process import purge_task_queue, running_worker


def database_url() -> str:
    """The URL of the test database pytest-django created, for processes the tests start."""
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
        return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    return f"sqlite:///{db['NAME']}"


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None) -> Iterator[None]:
    """The test database, as pytest-django sets it up; this process's view of the observed names
    stopped (its connection closed) before the database is dropped."""
    from observers_app.publishing import view

    yield
    view.stop()


@pytest.fixture(autouse=True)
def _presence_view_after_flush(request: pytest.FixtureRequest) -> Iterator[None]:
    """A transactional test's database is emptied after it, this process's view's row with it, behind
    the view's back (no add waits for it): stopped, the next notify starts a view that loads again."""
    yield
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames
    if marker is not None and (marker.kwargs.get("transaction") or transactional):
        from observers_app.publishing import view

        view.stop()


@pytest.fixture(scope="session")
def worker(django_db_setup: None, django_db_blocker: Any) -> Iterator[str]:
    """One worker process (prefork, -c 2) for the whole session; yields its node name, for remote
    control commands addressed to it alone."""
    purge_task_queue()
    with django_db_blocker.unblock():
        env = {"DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "tests.settings"}
    nodename = f"observers-test-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
    with running_worker(concurrency=2, env=env, hostname=nodename):
        yield nodename


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_flower(**env: str) -> Iterator[str]:
    """A real Flower process of the project on a free loopback port, sharing the test database;
    yields its base URL."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="flower-metrics-") as metrics_dir:
        environment = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            # Flower's own gauges stay out of the directory /observers/metrics merges.
            "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
            **env,
        }
        command = [sys.executable, "-m", "celery", "-A", "project", "flower", f"--port={port}"]
        flower = subprocess.Popen(
            [*command, "--address=127.0.0.1"],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            flower.terminate()
            flower.wait(timeout=20)


def wait_for(predicate: Callable[[], Any], *, timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            assert result, f"condition not met within {timeout} s"
            return result
        time.sleep(interval)


def start_client_process(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        **(extra_env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.client_process", *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def wait_ready(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("ready"), f"owner process did not start: {line!r}"
    return line.split()[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that need services as ``integration``: those that use the database or a worker
    (``pytest -m "not integration"`` runs the unit tests of pure logic alone)."""
    for item in items:
        uses = set(getattr(item, "fixturenames", ()))
        needs_services = item.get_closest_marker("django_db") or item.get_closest_marker("faults")
        if needs_services or uses & {"worker", "db", "transactional_db", "live_server"}:
            item.add_marker(pytest.mark.integration)

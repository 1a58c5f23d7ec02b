"""Processes that fork after the hub is loaded (Celery's prefork pool, gunicorn --preload) fork with
no hub thread running: from Python 3.12 on, forking a multi-threaded process warns (a child may
inherit a lock that a thread held half-way)."""

import functools
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.db import transaction

from observers_app import manager
from observers_app.publishing import outbox
from tests.conftest import database_url, free_port, start_client_process, wait_for, wait_ready
from tests.factories import unique_var
from tests.testapp.callbacks import record
from tests.testapp.models import Received
from tests.worker_process import running_worker

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 12), reason="Python warns of a fork in a multi-threaded process from 3.12 on"
)
FORK_WARNING = "is multi-threaded, use of fork() may lead to deadlocks"
WARNINGS_SHOWN = {"PYTHONWARNINGS": "always::DeprecationWarning"}


@pytest.mark.django_db(transaction=True)
def test_a_prefork_worker_replaces_its_pool_processes_with_no_thread_running(tmp_path: Path):
    """Every task in a new pool process (--max-tasks-per-child 1): the worker's main process forks
    again while the hub runs; a durable notification a dead caller left is still published, now by
    the pool processes. Queues of its own, so that no other worker takes its messages."""
    var = unique_var()
    manager.add_observer(var, record)
    log = tmp_path / "worker.log"
    # Named after the suite's own queue: two suites on one broker never share it.
    queues = {"OBSERVERS_QUEUE": f"{os.environ['OBSERVERS_QUEUE']}-fork"}
    env = {"DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "tests.settings", **queues}
    with running_worker(
        env={**env, **WARNINGS_SHOWN}, log_path=log, extra_args=("--max-tasks-per-child", "1")
    ) as main:
        first_pool = pool_processes(main.pid)
        client = start_client_process("notify", var, "3", extra_env=queues)
        wait_ready(client)
        wait_for(functools.partial(received, var, 1))
        client.communicate("go\n", timeout=60)
        wait_for(functools.partial(received, var, 4))
        # A durable notification whose caller died between its commit and its publish.
        with transaction.atomic():
            outbox.write(str(uuid.uuid4()), f'["{var}",4,5,null,"{uuid.uuid4()}",0.0]')
        wait_for(functools.partial(received, var, 5), timeout=30)
        assert pool_processes(main.pid) - first_pool, "the worker replaced its pool processes"
    assert FORK_WARNING not in log.read_text(errors="replace")


def pool_processes(pid: int) -> set[int]:
    return set(map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split()))


def received(var_id: str, value: int) -> bool:
    return Received.objects.filter(var_id=var_id, new_value=value).exists()


@pytest.mark.django_db(transaction=True)
def test_gunicorn_preloading_the_project_forks_its_workers_with_no_thread_running(tmp_path: Path):
    """The master imports the project (the hub's AppConfig.ready() included) and forks a new worker
    after every request."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        **WARNINGS_SHOWN,
    }
    command = [sys.executable, "-m", "gunicorn", "project.wsgi:application", "--preload"]
    command += ["--bind", f"127.0.0.1:{port}", "--workers", "2", "--max-requests", "1"]
    # gunicorn's own control-socket thread (gunicorn 23 and newer) would warn at every fork by itself.
    command += ["--no-control-socket"]
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as output:
        server = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:

        def answered() -> bool:
            try:
                return urllib.request.urlopen(f"{base}/admin/login/", timeout=2).status == 200
            except OSError:
                return False

        for _ in range(6):  # each answer retires its worker: the master forks another
            wait_for(answered, timeout=30)
    finally:
        server.terminate()
        server.wait(timeout=20)
    text = log.read_text(errors="replace")
    assert text.count("Booting worker") >= 4, text
    assert FORK_WARNING not in text

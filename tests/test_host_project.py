"""A fresh `django-admin startproject` host gets the whole hub from the built wheel and INSTALLED_APPS."""

import functools
import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from observers_app import wiring
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.host_project]

REPO = Path(__file__).resolve().parent.parent
UNPACKAGED = (".git", ".venv", "build", "*.egg-info", "__pycache__", "*.sqlite3*", "docs", "screenshots")
# The host's own additions beyond INSTALLED_APPS are for this test only: queue names of its own (the
# broker is shared with other runs, whose workers consume "celery") and a short sweep interval, so
# beat's sweep is seen within seconds.
HOST_SETTINGS = """
INSTALLED_APPS += ["observers_app", "hostapp", *{beat_app!r}]
OBSERVERS_QUEUE = {queue!r}
CELERY_TASK_DEFAULT_QUEUE = {default_queue!r}
OBSERVERS_SWEEP_INTERVAL = 1.0
"""
# Celery's "First steps with Django" layout, as the host writes it.
HOST_CELERY = """
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
app = Celery("mysite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
"""
HOST_TASKS = """
from pathlib import Path

from celery import shared_task


@shared_task
def touch(path):
    Path(path).write_text("done")
"""
HOST_CALLBACKS = """
import json
import os

from observers_app.registry import observer_callback


@observer_callback
def record(var_id, old_value, new_value, metadata):
    with open(os.environ["HOST_RECORDS"], "a") as records:
        records.write(json.dumps([var_id, old_value, new_value]) + "\\n")
"""


def host_environment(**extra: str) -> dict[str, str]:
    """This machine's environment without what the test run set for this repository's project."""
    ours = ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "DATABASE_URL", "SECRET_KEY", "PROMETHEUS_MULTIPROC_DIR")
    return {
        **{k: v for k, v in os.environ.items() if k not in ours and not k.startswith("OBSERVERS_")},
        **extra,
    }


def run(*args: str | Path, cwd: Path = REPO, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env or host_environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    # Built from a copy: setuptools reuses a build/ directory, which could carry files since deleted.
    source = tmp_path_factory.mktemp("source") / "repo"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*UNPACKAGED))
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", dist, source)
    (built,) = dist.glob("django_observers_hub-*.whl")
    return built


def test_the_wheel_holds_the_app_and_nothing_else(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"observers_app"}
    assert "observers_app/py.typed" in names
    assert "observers_app/migrations/0001_initial.py" in names
    assert "observers_app/templates/admin/observers_app/stats.html" in names
    assert not [name for name in names if "bench" in name or "soak" in name or "demo" in name]


@dataclass
class Host:
    root: Path
    queue: str
    python: Callable[[str], dict[str, Any]]
    start: Callable[..., subprocess.Popen[bytes]]
    django_before: str  # what `pip install django` gave the host, before it installed the hub
    django_after: str
    database_scheduler: bool  # django-celery-beat installs beside this Django without changing it
    first_run: str  # what the host's first migrate and check printed


def django_version(pip: Path) -> str:
    shown = run(pip, "show", "django")
    return next(line.split(":", 1)[1].strip() for line in shown.splitlines() if line.startswith("Version:"))


@pytest.fixture(scope="module")
def host(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    """A fresh virtual environment with the wheel installed, and a new project that adds the app."""
    root = tmp_path_factory.mktemp("host")
    venv = root / "venv"
    run(sys.executable, "-m", "venv", venv)
    pip = venv / "bin/pip"
    # A new user's steps: the newest Django from the index for this Python, then the hub.
    run(pip, "install", "--quiet", "django")
    django_before = django_version(pip)
    run(pip, "install", "--quiet", f"{wheel}[postgres,prometheus]")
    django_after = django_version(pip)
    # django-celery-beat: the host's own choice of scheduler, tried below beside the default one, where
    # a release of it admits this Django (pinned, so that pip cannot change the host's Django for it).
    pinned = root / "keep-django.txt"
    pinned.write_text(f"django=={django_after}\n")
    beat = subprocess.run(
        [str(pip), "install", "--quiet", "-c", str(pinned), "django-celery-beat>=2.8"],
        env=host_environment(),
        capture_output=True,
        timeout=600,
    )
    site = root / "site"
    site.mkdir()
    run(venv / "bin/django-admin", "startproject", "mysite", site)
    package = site / "mysite"
    (package / "celery.py").write_text(HOST_CELERY)
    (package / "__init__.py").write_text(
        'from .celery import app as celery_app\n\n__all__ = ("celery_app",)\n'
    )
    queue = f"observers-host-{uuid.uuid4().hex[:8]}"
    with open(package / "settings.py", "a") as settings:
        beat_app = ["django_celery_beat"] if beat.returncode == 0 else []
        settings.write(HOST_SETTINGS.format(queue=queue, default_queue=f"{queue}-tasks", beat_app=beat_app))
    urls = package / "urls.py"
    urls.write_text(
        urls.read_text()
        .replace("from django.urls import path", "from django.urls import include, path")
        .replace("urlpatterns = [", 'urlpatterns = [\n    path("observers/", include("observers_app.urls")),')
    )
    (site / "hostapp").mkdir()
    (site / "hostapp/__init__.py").write_text("")
    (site / "hostapp/tasks.py").write_text(HOST_TASKS)
    (site / "hostapp/callbacks.py").write_text(HOST_CALLBACKS)
    env = host_environment(HOST_RECORDS=str(root / "records.jsonl"))
    python = venv / "bin/python"
    first_run = run(python, "manage.py", "migrate", "--noinput", cwd=site, env=env)
    first_run += run(python, "manage.py", "check", cwd=site, env=env)
    processes: list[subprocess.Popen[bytes]] = []

    def start(*args: str, log: str) -> subprocess.Popen[bytes]:
        with open(root / log, "wb") as out:
            process = subprocess.Popen(
                [str(venv / "bin/celery"), "-A", "mysite", *args],
                cwd=site,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        processes.append(process)
        return process

    def host_python(code: str) -> dict[str, Any]:
        """Runs ``code`` in the host (Django set up) and returns the JSON it printed last."""
        script = (
            "import django, json, os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')\n"
        )
        script += "django.setup()\n" + textwrap.dedent(code)
        return json.loads(run(python, "-c", script, cwd=site, env=env).strip().splitlines()[-1])

    # A node name of its own: the broker is shared with other workers on this machine (pidbox queues).
    start("worker", "-c", "2", "-n", f"{queue}@%h", "--without-mingle", "--without-gossip", log="worker.log")
    try:
        yield Host(
            root=root,
            queue=queue,
            python=host_python,
            start=start,
            django_before=django_before,
            django_after=django_after,
            database_scheduler=beat.returncode == 0,
            first_run=first_run,
        )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        host_python_cleanup = f"""
            from celery import current_app
            with current_app.connection_for_write() as connection:
                for name in ({queue!r}, {queue + ".deliver"!r}, {queue + ".shed"!r}, {queue + "-tasks"!r}):
                    connection.default_channel.queue_delete(name)
                for name in ({queue + ".webhooks"!r}, {queue + ".dead"!r}):
                    connection.default_channel.queue_delete(name)
            print("{{}}")
        """
        host_python(host_python_cleanup)


def test_the_hub_installs_beside_the_hosts_django_and_its_first_run_is_quiet(host: Host):
    assert host.django_after == host.django_before, "installing the hub changed the host's Django"
    # startproject's default database is SQLite: migrate and check say nothing of the hub.
    assert "WARNING" not in host.first_run.upper(), host.first_run
    assert "System check identified no issues" in host.first_run


def test_a_plain_worker_delivers_the_hubs_callbacks_and_runs_the_hosts_own_tasks(host: Host):
    host_python, root = host.python, host.root
    var = f"price:{uuid.uuid4().hex[:8]}"
    done = root / "host-task-done"
    queues = host_python(f"""
        from celery import current_app
        from observers_app import manager
        from hostapp.callbacks import record
        from hostapp.tasks import touch

        manager.add_observer({var!r}, record)
        manager.notify_observers({var!r}, 1, 2)
        assert manager.flush()
        touch.delay({str(done)!r})
        shape = {{}}
        with current_app.connection_for_write() as connection:
            for name in ({host.queue + "-tasks"!r}, {host.queue!r}):
                channel = connection.channel()
                try:
                    # Redeclared without arguments: refused (406) only for a queue declared with some.
                    channel.queue_declare(name, durable=True, auto_delete=False)
                    shape[name] = "unbounded"
                except Exception as exc:
                    shape[name] = type(exc).__name__
        print(json.dumps(shape))
    """)
    records = root / "records.jsonl"
    wait_for(lambda: records.exists() and json.loads(records.read_text().splitlines()[0]) == [var, 1, 2])
    wait_for(done.exists)
    assert queues[f"{host.queue}-tasks"] == "unbounded"  # the host's default queue: not bounded
    assert queues[host.queue] == "PreconditionFailed"  # the hub's dispatch queue is bounded


def test_beat_sweeps_dead_owners_with_the_default_and_the_database_scheduler(host: Host):
    host_python, start, root = host.python, host.start, host.root
    schedulers = ["celery.beat:PersistentScheduler"]
    if host.database_scheduler:
        schedulers.append("django_celery_beat.schedulers:DatabaseScheduler")
    for scheduler in schedulers:
        owned = host_python("""
            from observers_app import manager
            from hostapp.callbacks import record

            # Never heartbeated: dead in 5 s, long after the add even on a loaded machine (at 0.5 s a
            # slow first add met a lease already expired: OwnerDead).
            lease = manager.open_owner("short-lived", ttl_s=5)
            print(json.dumps({"ref": str(manager.add_observer("leased:1", record, owner=lease))}))
        """)
        beat = start("beat", "-S", scheduler, "-s", str(root / "beat-schedule"), "-l", "INFO", log="beat.log")
        try:
            swept = f"""
                from observers_app.models import Observer
                print(json.dumps({{"gone": not Observer.objects.filter(id={owned["ref"]!r}).exists()}}))
            """
            wait_for(functools.partial(is_gone, host_python, swept), timeout=30)
        finally:
            beat.terminate()
            beat.wait(timeout=20)
    if not host.database_scheduler:
        pytest.skip(
            f"no django-celery-beat release admits Django {host.django_after} yet (default scheduler passed)"
        )
    entry = host_python("""
        from django_celery_beat.models import PeriodicTask
        task = PeriodicTask.objects.get(name="observers-sweep")
        print(json.dumps({"task": task.task, "every": task.interval.every, "queue": task.queue}))
    """)
    assert entry == {"task": wiring.SWEEP_TASK, "every": 1, "queue": f"{host.queue}.deliver"}


def is_gone(host_python: Callable[[str], dict[str, Any]], code: str) -> bool:
    return bool(host_python(code)["gone"])


def test_the_hubs_admin_pages_render_for_a_superuser(host: Host):
    host_python = host.python
    statuses = host_python("""
        from django.contrib.auth import get_user_model
        from django.test import Client
        from django.test.utils import setup_test_environment

        setup_test_environment()
        user = get_user_model().objects.create_superuser("admin", "admin@example.com", "not-used")
        client = Client()
        client.force_login(user)
        pages = [
            "/admin/observers_app/observer/",
            "/admin/observers_app/owner/",
            "/admin/observers_app/variablestate/",
            "/admin/observers_app/observer/stats/",
            "/admin/observers_app/observer/inspect/price:1/",
            "/observers/metrics",
        ]
        print(json.dumps({page: client.get(page).status_code for page in pages}))
    """)
    assert statuses and set(statuses.values()) == {200}, statuses

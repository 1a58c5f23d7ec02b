"""The demo behind ``manage.py observers_demo``: a real worker, real observers, callbacks arriving."""

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import current_app
from django.db import connection
from tqdm import tqdm

from observers_app import manager
from observers_app.registry import observer_callback
from tests.worker_process import running_worker

VARIABLES = {"price:ACME": 40, "stock:WIDGET": 25, "weather:OSLO": 10}
CHANGES_PER_VARIABLE = 20


@observer_callback(name="observers.demo.on_change")
def on_change(var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]) -> None:
    """A stand-in for real work: it checks what it was given."""
    if metadata["seq"] < 1:
        raise ValueError(f"{var_id}: sequence numbers start at 1")


def choose_broker(workdir: Path, say: Callable[[str], None]) -> str:
    """The configured broker if it answers, else an embedded SQLite broker the worker shares."""
    configured = current_app.conf.broker_url
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        say(f"broker: {conn.as_uri()} (RabbitMQ reachable)")
        return str(configured)
    except Exception as exc:
        embedded = f"sqla+sqlite:///{workdir / 'broker.sqlite3'}"
        say(f"broker: RabbitMQ not reachable ({exc}); using the embedded broker {embedded}")
        current_app.conf.update(broker_url=embedded, broker_read_url=embedded, broker_write_url=embedded)
        return embedded


def run(*, workdir: Path, say: Callable[[str], None]) -> dict[str, int]:
    workdir.mkdir(parents=True, exist_ok=True)
    broker_url = choose_broker(workdir, say)
    say(f"database: {connection.vendor} {connection.settings_dict['NAME']}")
    expected = sum(VARIABLES.values()) * CHANGES_PER_VARIABLE
    sent_before = manager.get_stats()["notifications_sent"]
    refs: list[tuple[str, Any]] = []
    try:
        with running_worker(
            concurrency=2,
            include=("benchmarks.demo",),
            env={"CELERY_BROKER_URL": broker_url},
            log_path=workdir / "worker.log",
        ):
            say("worker started (prefork -c 2); registering observers")
            for var_id, count in VARIABLES.items():
                refs += [(var_id, manager.add_observer(var_id, on_change)) for _ in range(count)]
                say(f"  {var_id}: {manager.observer_count(var_id)} observers")
            for change in range(CHANGES_PER_VARIABLE):
                for var_id in VARIABLES:
                    manager.notify_observers(var_id, change, change + 1, {"source": "demo"})
            say(f"fired {CHANGES_PER_VARIABLE} changes per variable; waiting for {expected} callbacks")
            wait_for_callbacks(expected, sent_before)
    finally:
        for var_id, ref in refs:
            manager.remove_observer(var_id, ref)
    return manager.get_stats()


def wait_for_callbacks(expected: int, sent_before: int, *, timeout: float = 300) -> None:
    """Show the hub's global callback counter climbing to ``expected`` as a progress bar."""
    deadline = time.monotonic() + timeout
    with tqdm(total=expected, unit="callback", file=sys.stderr) as bar:
        while bar.n < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {bar.n} of {expected} callbacks arrived in {timeout} s")
            time.sleep(0.1)
            bar.update(min(manager.get_stats()["notifications_sent"] - sent_before, expected) - bar.n)

"""Callbacks the tests register; the worker imports this module through autodiscovery."""

import json
import os
import sys
import time
from typing import Any

from observers_app.registry import observer_callback

from .models import Received


@observer_callback
def record(var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]) -> None:
    Received.objects.create(
        observer_ref=metadata["observer_ref"],
        var_id=var_id,
        old_value=old_value,
        new_value=new_value,
        metadata=metadata,
        pid=os.getpid(),
    )


@observer_callback(name="tests.slow_record")
def slow_record(var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]) -> None:
    time.sleep(0.05)
    record(var_id, old_value, new_value, metadata)


@observer_callback(name="tests.explode")
def explode(var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]) -> None:
    raise RuntimeError(f"callback failed on purpose for {var_id}")


@observer_callback(name="tests.stall")
def stall(var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]) -> None:
    try:
        time.sleep(60)
    except Exception:
        # A callback that swallows every Exception still cannot outlive its time limit.
        time.sleep(60)


@observer_callback(name="tests.die")
def die(var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]) -> None:
    """Kills the worker process running it (a poison message's way); never a process that is not one."""
    if "celery" in sys.argv[0]:
        os._exit(1)


@observer_callback(name="tests.explode_nul")
def explode_nul(var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]) -> None:
    raise RuntimeError("bad byte \x00 and a lone surrogate \ud800 in an error text " + "x" * 5000)


@observer_callback(name="tests.record_json")
def record_json(var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]) -> None:
    """Records the values' and the metadata's exact JSON (a jsonb column would read 1e16 back as an
    int), and the hub's keys to find them by."""
    Received.objects.create(
        observer_ref=metadata["observer_ref"],
        var_id=var_id,
        old_value=json.dumps(old_value, sort_keys=True),
        new_value=json.dumps(new_value, sort_keys=True),
        metadata={
            "notification_id": metadata["notification_id"],
            "version": metadata.get("version"),
            "json": json.dumps(metadata, sort_keys=True),
        },
        pid=os.getpid(),
    )


def _append(line: str) -> None:
    # One write of a short line with O_APPEND: records of concurrent pool processes never interleave.
    fd = os.open(os.environ["OBSERVERS_FAULTS_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@observer_callback(name="tests.append_line")
def append_line(var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]) -> None:
    """Records (observer, notification) in a file, not the database: fault tests break the database."""
    _append(f"{metadata['observer_ref']} {metadata['notification_id']}\n")


@observer_callback(name="tests.append_line_briefly")
def append_line_briefly(var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]) -> None:
    time.sleep(0.001)
    append_line(var_id, old_value, new_value, metadata)


@observer_callback(name="tests.append_line_slowly")
def append_line_slowly(var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]) -> None:
    time.sleep(0.005)
    append_line(var_id, old_value, new_value, metadata)


@observer_callback(name="tests.relay")
def relay(var_id: str, old_value: Any, new_value: Any, metadata: dict[str, Any]) -> None:
    """Notifies ``relayed:<var_id>`` RELAY_COUNT times from the worker's pool process (its outbox)."""
    from observers_app import manager

    sent = [
        manager.notify_observers(f"relayed:{var_id}", None, f"{new_value}:{n}")
        for n in range(int(os.environ.get("OBSERVERS_FAULTS_RELAY_COUNT", "50")))
    ]
    _append("".join(f"sent {notification_id}\n" for notification_id in sent))
    _append(f"{metadata['observer_ref']} {metadata['notification_id']}\n")


def refuse_poison(*, var_id: str, **kwargs: Any) -> None:
    """Connected to notification_dispatched: a dispatch of ``poison:*`` fails every time (a hub bug,
    as the worker sees it) until the test "fixes" it by recording ``<var_id>:fixed``."""
    if var_id.startswith("poison:") and not Received.objects.filter(var_id=f"{var_id}:fixed").exists():
        raise RuntimeError(f"poison on purpose: {var_id}")

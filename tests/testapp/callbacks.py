"""Callbacks the tests register; the worker imports this module through autodiscovery."""

import json
import os
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

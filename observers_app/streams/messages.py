"""Stream events and their Server-Sent Events wire form."""

import json
import time
from dataclasses import dataclass, field
from typing import Any

from ..telemetry.dashboard import VARIABLE

HEARTBEAT = b": heartbeat\n\n"


@dataclass
class StreamEvent:
    """One change (or the snapshot of a value) as a stream sends it; ``wire`` is built once and
    shared by every stream that sends it."""

    var_id: str
    seq: int | None
    notification_id: str | None
    data: dict[str, Any]
    wire: bytes = field(default=b"")

    def __post_init__(self) -> None:
        if not self.wire:  # without its id: each stream writes its own (streams/resume.py)
            self.wire = to_wire(self.var_id, None, self.data)

    @property
    def version(self) -> int | None:
        """A session variable's version: what a snapshot of it covers exactly."""
        version = (self.data.get("metadata") or {}).get("version")
        return version if isinstance(version, int) else None

    @property
    def epoch(self) -> str | None:
        """The epoch of the variable's numbering its ``seq`` belongs to (a notification's)."""
        epoch = (self.data.get("metadata") or {}).get("epoch")
        return epoch if isinstance(epoch, str) else None


def to_wire(event: str, event_id: object, data: dict[str, Any]) -> bytes:
    """One SSE message. A name with a line break cannot be an ``event:`` line: it is sent as a
    plain message (its ``data`` names the variable either way)."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if "\n" not in event and "\r" not in event:
        lines.append(f"event: {event}")
    lines.append(f"data: {json.dumps(data, separators=(',', ':'))}")
    return ("\n".join(lines) + "\n\n").encode()


def from_notification(message: dict[str, Any]) -> StreamEvent:
    """The event of a notification forwarded by a worker (see forwarding.forward)."""
    metadata = message["metadata"]
    return StreamEvent(
        var_id=message["var_id"],
        seq=metadata.get("seq"),
        notification_id=metadata.get("notification_id"),
        data={
            "var_id": message["var_id"],
            "old_value": message["old_value"],
            "new_value": message["new_value"],
            "metadata": {key: value for key, value in metadata.items() if key != "observer_ref"},
        },
    )


def snapshot(var_id: str, value: Any, *, seq: int, version: int | None, absent: bool = False) -> StreamEvent:
    """The current value of a variable, sent first when a stream opens; an ``absent`` one (a session
    variable deleted or never set) is not sent, only what it covers is kept."""
    metadata: dict[str, Any] = {"snapshot": True, "seq": seq}
    if version is not None:
        metadata["version"] = version
    if absent:
        metadata["absent"] = True
    return StreamEvent(
        var_id=var_id,
        seq=seq,
        notification_id=None,
        data={"var_id": var_id, "old_value": None, "new_value": value, "metadata": metadata},
    )


def dashboard(
    reading: dict[str, Any], previous: dict[str, Any] | None, *, snapshot: bool = False
) -> StreamEvent:
    """A reading of the dashboard's figures; its seq is the time in ms (readings are not numbered)."""
    seq = int(time.time() * 1000)
    old = previous["stats"] if previous else None
    return StreamEvent(
        var_id=VARIABLE,
        seq=seq,
        notification_id=None,
        data={
            "var_id": VARIABLE,
            "old_value": old,
            "new_value": reading,
            "metadata": {"seq": seq, "snapshot": snapshot},
        },
    )


def coalesced(first: StreamEvent, latest: StreamEvent) -> StreamEvent:
    """``latest`` standing in for every change since ``first`` (a slow reader's buffer was full)."""
    count = int(first.data.get("coalesced", 1)) + 1
    return StreamEvent(
        var_id=latest.var_id,
        seq=latest.seq,
        notification_id=latest.notification_id,
        data={**latest.data, "old_value": first.data["old_value"], "coalesced": count},
    )


def reset(reason: str) -> bytes:
    """Sent before a snapshot when a reconnect's ``Last-Event-ID`` could not be resumed, saying why:
    what changed meanwhile is not sent, the snapshot shows where things stand."""
    return to_wire("reset", None, {"reason": reason})


def closing(reason: str) -> bytes:
    """The last message of a stream the hub closes, saying why."""
    return to_wire("close", None, {"reason": reason})

"""Calls a batch of observers' callbacks, each isolated from the others and bounded in time."""

import logging
import math
import signal
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from .. import registry, validation
from ..db import DATABASE_ERRORS
from ..exceptions import BrokerUnavailable, CallbackTimeout

# What fails a transport callback without being the observer's fault: the broker, the database.
HUB_FAULTS = (BrokerUnavailable, *DATABASE_ERRORS)

logger = logging.getLogger(__name__)

# Keys the hub adds to every callback's metadata; a caller may not send them itself.
HUB_METADATA_KEYS = frozenset(
    {"notification_id", "seq", "epoch", "observer_ref", "notified_at", "coalesced", "replayed"}
)


# An observer's id: its text as a page of observers is read (no UUID object per observer), or a UUID.
Ref = uuid.UUID | str


@dataclass
class BatchOutcome:
    called: int = 0
    failed: dict[Ref, str] = field(default_factory=dict)
    recovered: list[Ref] = field(default_factory=list)


class _Deadline:
    """Arms SIGALRM around each callback; only possible in a process's main thread.

    Arming costs two system calls, a measurable share of a trivial callback, so a callback starting
    within SLACK_S of the last arming runs under that one: each gets between ``seconds - SLACK_S``
    and ``seconds``. An alarm between callbacks interrupts nothing (the next one re-arms)."""

    SLACK_S = 0.001

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.enabled = seconds > 0 and threading.current_thread() is threading.main_thread()
        self.armed_at = -math.inf
        self.inside = False
        if self.enabled:
            self.previous = signal.signal(signal.SIGALRM, self._on_alarm)
        elif seconds > 0:
            logger.warning("callback time limit not enforced: not in the main thread")

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        self.armed_at = -math.inf
        if self.inside:
            raise CallbackTimeout

    def arm(self) -> None:
        if self.enabled:
            now = time.monotonic()
            if now - self.armed_at > self.SLACK_S:
                signal.setitimer(signal.ITIMER_REAL, self.seconds)
                self.armed_at = now
        self.inside = True

    def disarm(self) -> None:
        self.inside = False

    def restore(self) -> None:
        if self.enabled:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)


def call_observers(
    observers: Iterable[tuple[Ref, str, int]],
    notification: dict[str, Any],
    *,
    time_limit: float,
) -> BatchOutcome:
    """Call each ``(ref, callback name, failures so far)`` with the notification.

    An exception or an overrun is logged with its traceback and recorded against that observer;
    the rest of the batch is called regardless. The hub's own transport callbacks (webhooks, streams)
    are the exception: when the broker or the database fails them, or they overrun waiting on it, the
    fault is the hub's, not the observer's: it is raised (BrokerUnavailable for an overrun), and the
    page delivered again later; the observer's failures are untouched.
    """
    outcome = BatchOutcome()
    var_id = notification["var_id"]
    old_value, new_value = notification["old_value"], notification["new_value"]
    hub_keys = {
        "notification_id": notification["notification_id"],
        "seq": notification["seq"],
        "epoch": notification.get("epoch"),
        "notified_at": notification["notified_at"],
    }
    if "coalesced" in notification:
        hub_keys["coalesced"] = notification["coalesced"]
    if notification.get("replayed"):
        hub_keys["replayed"] = True
    # Merged once; each callback gets a copy of its own, so none can change what the next sees.
    metadata = {**(notification["metadata"] or {}), **hub_keys}
    deadline = _Deadline(time_limit)
    # Bound once: the loop runs once per observer, a thousand times a page.
    lookup, arm, disarm = registry.lookup, deadline.arm, deadline.disarm
    try:
        for ref, callback_name, failures in observers:
            outcome.called += 1
            try:
                callback = lookup(callback_name)
                arm()
                try:
                    callback(var_id, old_value, new_value, {**metadata, "observer_ref": str(ref)})
                finally:
                    disarm()
            except CallbackTimeout as exc:
                if registry.is_transport(callback_name):
                    raise BrokerUnavailable(f"{callback_name} ran longer than {time_limit} s") from exc
                outcome.failed[ref] = f"CallbackTimeout: ran longer than {time_limit} s"
                _log_failure(ref, callback_name, var_id, outcome.failed[ref], traceback=False)
            except Exception as exc:
                if isinstance(exc, HUB_FAULTS) and registry.is_transport(callback_name):
                    raise
                # Cleaned and bounded: the text is written to the observer's row.
                outcome.failed[ref] = validation.storable_text(f"{type(exc).__name__}: {exc}")
                _log_failure(ref, callback_name, var_id, outcome.failed[ref], traceback=True)
            else:
                if failures:
                    outcome.recovered.append(ref)
    finally:
        deadline.restore()
    return outcome


def _log_failure(ref: Ref, callback_name: str, var_id: str, error: str, *, traceback: bool) -> None:
    logger.error(
        "event=callback_failed observer=%s callback=%s var_id=%r error=%r",
        ref,
        callback_name,
        var_id,
        error,
        exc_info=traceback,
    )

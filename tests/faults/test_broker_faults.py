"""The broker stopped, killed hard, unreachable for a minute: callers and workers recover, nothing is lost."""

import time
from collections.abc import Callable

import pytest

from tests.conftest import wait_for

from .conftest import Scene, report
from .services import PrivateRabbit

pytestmark = pytest.mark.faults


def notify_through(scene: Scene, var_id: str, fault: Callable[[], None], *, seconds: float) -> float:
    """A caller notifies ``var_id`` 50 times a second for ``seconds`` while ``fault`` runs from its
    third second; returns the caller's slowest notify_observers call (ms)."""
    caller = scene.start("notify", var_id, "50", str(seconds))
    try:
        time.sleep(3)
        fault()
        out, _ = caller.communicate(timeout=seconds + 120)
    finally:
        if caller.poll() is None:
            caller.kill()
    assert caller.returncode == 0, "the caller raised or was stopped"
    lines = out.splitlines()
    assert lines[-1].startswith("done")
    scene.expect(var_id, lines)
    return float(lines[-1].split("slowest_ms=")[1])


def stop_and_start(rabbit: PrivateRabbit, down_s: float) -> Callable[[], None]:
    def fault() -> None:
        rabbit.stop_app()
        time.sleep(down_s)
        rabbit.start_app()

    return fault


def kill_and_restart(rabbit: PrivateRabbit) -> None:
    rabbit.kill()
    time.sleep(2)
    rabbit.start()


@pytest.mark.parametrize(
    ("name", "down_s", "seconds"),
    [("broker stopped 7 s and started", 7, 15), ("broker unreachable 60 s", 60, 68)],
)
def test_broker_stopped_then_started(
    scene: Scene, rabbit: PrivateRabbit, name: str, down_s: float, seconds: float
):
    scene.observe("stopped", 3)
    with scene.worker():
        slowest_ms = notify_through(scene, "stopped", stop_and_start(rabbit, down_s), seconds=seconds)
        wait_for(scene.all_delivered, timeout=120, interval=0.5)
    counts = scene.count()
    report(name, {**counts, "caller_slowest_ms": round(slowest_ms)})
    assert counts["lost"] == 0 and counts["unexpected"] == 0
    assert slowest_ms < 1000, "the caller blocked on the broker"


def test_broker_killed_hard_and_restarted(scene: Scene, rabbit: PrivateRabbit):
    scene.observe("killed", 3)
    with scene.worker():
        slowest_ms = notify_through(scene, "killed", lambda: kill_and_restart(rabbit), seconds=15)
        wait_for(scene.all_delivered, timeout=120, interval=0.5)
    counts = scene.count()
    report("broker killed (kill -9) and restarted", {**counts, "caller_slowest_ms": round(slowest_ms)})
    assert counts["lost"] == 0 and counts["unexpected"] == 0
    assert slowest_ms < 1000, "the caller blocked on the broker"

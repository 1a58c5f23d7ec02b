"""The broker stopped, killed hard, unreachable for a minute, out of memory, its queues full: callers and
workers recover, nothing is lost, no good message is parked, no observer is blamed."""

import json
import time
from collections.abc import Callable

import pytest

from tests.conftest import wait_for
from tests.receivers import running_receiver
from tests.sse import EventStream

from .conftest import Scene, report, sent_ids
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


def test_a_full_deliver_queue_loses_no_page_and_parks_nothing(scene: Scene):
    """The deliver queue bounded to a few pages while 50 fan-outs of about 15 pages each are sent: the
    pages the broker refuses wait in the outbox table, and every one is delivered once the queue drains.
    50, not fewer: the worker prefetches up to 200 messages, which the queue's bound does not count, so
    fewer pages than that might never fill it."""
    scene.env.update(OBSERVERS_DELIVER_QUEUE_MAX_BYTES="4000", OBSERVERS_BATCH_SIZE="20")  # every process
    scene.observe("full", 300, "tests.append_line_slowly", bulk=True)
    with scene.worker():
        scene.expect("full", scene.run("notify", "full", "50", "1.0", "plain"))
        wait_for(scene.all_delivered, timeout=300, interval=1)
        stats = scene.stats()
    counts = scene.count()
    report(
        "deliver queue full (4,000 bytes) mid fan-out",
        {**counts, "pages_held": stats.get("messages_held", 0), "dead_letters": stats["dead_letters"]},
    )
    assert counts["lost"] == 0 and counts["unexpected"] == 0
    assert stats["dead_letters"] == 0 and stats["messages_parked"] == 0
    assert stats.get("messages_held", 0) > 0, "the queue was never full: the test proved nothing"


def test_durable_notifications_are_never_shed_and_the_shed_queue_is_bounded(
    scene: Scene, rabbit: PrivateRabbit
):
    """No worker runs while callers send a few hundred durable and fast notifications into a dispatch
    queue of 100: every durable one is delivered, and the shed queue, bounded to 50, holds at most that."""
    scene.env.update(OBSERVERS_QUEUE_MAX_LENGTH="100", OBSERVERS_SHED_QUEUE_MAX_LENGTH="50")
    scene.observe("kept", 2)
    scene.observe("shed", 1)
    scene.run("declare", "-")  # the hub's queues, as a worker that ran before left them
    scene.expect("kept", scene.run("notify", "kept", "200", "1", "durable"))  # the oldest: shed first
    fast = scene.printed("sent", "notify", "shed", "1000", "0.3", "plain")
    assert len(fast) > 150 and len(scene.sent["kept"]) > 20
    shed_queue = f"{scene.env['OBSERVERS_QUEUE']}.shed"
    held_by_shed_queue = rabbit.queue_depth(shed_queue)
    with scene.worker():
        wait_for(scene.all_delivered, timeout=120, interval=0.5)
        wait_for(lambda: scene.stats()["notifications_shed"] >= held_by_shed_queue, timeout=30, interval=0.5)
        stats = scene.stats()
    counts = scene.count()
    delivered_fast = {line.split()[1] for line in scene.records()} & set(fast)
    report(
        "durable notifications into a full dispatch queue (no worker)",
        {
            **counts,
            "fast_delivered": len(delivered_fast),
            "fast_shed_counted": stats["notifications_shed"],
            "shed_queue_held": held_by_shed_queue,
        },
    )
    assert counts["lost"] == 0 and counts["unexpected"] == len(delivered_fast)  # the durable ones, all
    assert held_by_shed_queue <= 50
    assert stats.get("shed_queue_full", 0) >= 1


def test_a_broker_memory_alarm_quarantines_nothing_and_loses_nothing(scene: Scene, rabbit: PrivateRabbit):
    """Notifications to a variable with a webhook and a stream, dispatched while a memory alarm blocks
    every publisher: the hub's own callbacks cannot hand them on, which is the hub's fault, not the
    observers'. After the alarm clears, the webhook and the stream get every one; none is quarantined."""
    with running_receiver() as receiver, scene.web() as base:
        [ref] = scene.printed("ref", "webhook", "alarm", receiver.url)
        [token] = scene.printed("token", "token", "alarm")
        stream = EventStream(base, [("var", "alarm"), ("token", token)])
        try:
            assert stream.status == 200 and stream.opened.wait(30), "the stream did not open"
            sent = scene.run("notify", "alarm", "20", "0.25", "plain")  # waiting for a worker
            rabbit.set_memory_alarm(True)
            try:
                with scene.worker(OBSERVERS_CALLBACK_TIME_LIMIT="3"):
                    caller = scene.start("notify", "alarm", "1", "5", "plain")  # its send buffer waits
                    time.sleep(15)
                    rabbit.set_memory_alarm(False)
                    out, _ = caller.communicate(timeout=60)
                    sent += out.splitlines()
                    expected = set(sent_ids(sent))

                    def posted() -> list[str]:
                        return [
                            json.loads(r.body)["data"]["metadata"]["notification_id"]
                            for r in receiver.requests
                        ]

                    def streamed() -> list[str]:
                        return [event["data"]["metadata"]["notification_id"] for event in stream.of("alarm")]

                    wait_for(lambda: expected <= set(posted()) and expected <= set(streamed()), timeout=120)
            finally:
                rabbit.set_memory_alarm(False)
            health = [
                line.split()[1:] for line in scene.run("inspect", "alarm") if line.startswith("observer ")
            ]
        finally:
            stream.close()
    report(
        "broker memory alarm 15 s (webhook and stream)",
        {
            "expected": 2 * len(expected),
            "delivered": len(expected & set(posted())) + len(expected & set(streamed())),
            "lost": len(expected - set(posted())) + len(expected - set(streamed())),
            "duplicates": len(posted()) - len(set(posted())) + len(streamed()) - len(set(streamed())),
            "observer_failures": sum(int(failures) for _, failures, _ in health),
        },
    )
    assert len(health) == 2 and ref in [observer for observer, _, _ in health]
    assert all(failures == "0" and quarantined == "False" for _, failures, quarantined in health)

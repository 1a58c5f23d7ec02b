"""Processes killed or stopped mid-work: a worker SIGKILLed mid fan-out, callers SIGKILLed right after
commit (durable mode), a caller sent SIGTERM, a pool process shut down with notifications in its outbox."""

import signal

import pytest

from tests.conftest import wait_for
from tests.worker_process import stop_worker

from .conftest import Scene, kill_tree, report
from .services import PrivateRabbit

pytestmark = pytest.mark.faults

ROUNDS = 20
PER_ROUND = 10


def test_a_worker_killed_mid_fan_out_loses_nothing(scene: Scene):
    scene.observe("wide", 200, "tests.append_line_slowly")
    # About 10 pages each: 1 inline, the rest deliver tasks.
    with scene.worker(OBSERVERS_BATCH_SIZE="20") as worker:
        scene.expect("wide", scene.run("notify", "wide", "50", "0.2"))
        wait_for(lambda: len(scene.records()) >= 300, timeout=60)
        kill_tree(worker.pid)
        in_flight = scene.count()["lost"]
    with scene.worker(OBSERVERS_BATCH_SIZE="20"):
        wait_for(scene.all_delivered, timeout=180, interval=0.5)
    counts = scene.count()
    report("worker SIGKILLed mid fan-out", {**counts, "undelivered_at_kill": in_flight})
    assert in_flight > 0, "the kill came too late to test anything"
    assert counts["lost"] == 0 and counts["unexpected"] == 0


def test_callers_killed_right_after_commit_in_durable_mode_lose_nothing(scene: Scene):
    scene.observe("durable", 3)
    rolled_back: list[str] = []
    with scene.worker():
        before = scene.stats()["outbox_republished"]
        for _ in range(ROUNDS):
            lines = scene.run("commit-and-die", "durable", str(PER_ROUND))
            assert len([line for line in lines if line.startswith("sent ")]) == PER_ROUND
            scene.expect("durable", lines)
            rolled_back += [line.split()[1] for line in lines if line.startswith("rolledback ")]
        wait_for(scene.all_delivered, timeout=120, interval=0.5)
        republished = scene.stats()["outbox_republished"] - before
    counts = scene.count()
    delivered_ids = {line.split()[1] for line in scene.records()}
    report(
        f"caller SIGKILLed right after commit, durable ({ROUNDS} rounds x {PER_ROUND})",
        {
            **counts,
            "rolled_back_delivered": len(delivered_ids & set(rolled_back)),
            "published_by_workers": republished,
        },
    )
    assert counts["lost"] == 0 and counts["unexpected"] == 0
    assert not delivered_ids & set(rolled_back)


def test_a_caller_sent_sigterm_flushes_its_outbox(scene: Scene, rabbit: PrivateRabbit):
    scene.observe("term", 3)
    with scene.worker():
        rabbit.stop_app()  # the caller's messages wait in its outbox
        caller = scene.start("hold", "term", "200")
        try:
            assert caller.stdout is not None
            lines = []
            for line in caller.stdout:
                lines.append(line.strip())
                if line.startswith("held"):
                    break
            caller.send_signal(signal.SIGTERM)
        finally:
            rabbit.start_app()
        assert caller.wait(timeout=60) == -signal.SIGTERM  # it flushed, then died of the signal
        scene.expect("term", lines)
        wait_for(scene.all_delivered, timeout=120, interval=0.5)
    counts = scene.count()
    report("caller sent SIGTERM with its outbox full (broker down)", counts)
    assert counts["expected"] == 600
    assert counts["lost"] == 0 and counts["unexpected"] == 0


def test_a_pool_process_shut_down_publishes_what_its_callbacks_notified(scene: Scene):
    scene.observe("relay", 1, "tests.relay")
    scene.observe("relayed:relay", 2)
    env = {"OBSERVERS_FAULTS_RELAY_COUNT": "2000"}
    with scene.worker(**env) as worker:
        scene.expect("relay", scene.run("notify", "relay", "50", "0.1"))
        wait_for(scene.sent_from_callbacks, timeout=60, interval=0.005)
        stop_worker(worker)  # warm: its pool processes exit through worker_process_shutdown
    with scene.worker(**env):  # delivers what the first one published, and redelivered relays
        wait_for(lambda: scene.count()["lost"] == 0, timeout=120, interval=0.5)
        scene.expect("relayed:relay", scene.sent_from_callbacks())
        wait_for(scene.all_delivered, timeout=180, interval=0.5)
    counts = scene.count()
    report("pool process shut down with notifications in its outbox", counts)
    assert counts["lost"] == 0 and counts["unexpected"] == 0

"""PostgreSQL restarted while a process notifies and owns observers and a worker delivers; stopped for a
minute in the middle of a large fan-out."""

import time

import pytest

from tests.conftest import wait_for

from .conftest import Scene, children, report
from .services import PrivatePostgres

pytestmark = pytest.mark.faults


def test_postgres_restarted_loses_nothing_and_a_live_owner_keeps_its_observers(
    scene: Scene, postgres: PrivatePostgres
):
    scene.observe("pg", 2)
    scene.observe("pg-durable", 2)
    with scene.worker():
        # 2 observers of its process_owner(), which closes when it exits: 35 s leave room for the
        # restart, the sweep and the counting processes (each a new process, slow under load).
        caller = scene.start("notify", "pg", "50", "35", "own")
        # A caller whose transactions meet the restart: those that failed were not committed.
        durable_caller = scene.start("notify", "pg-durable", "50", "35", "durable-retrying")
        try:
            time.sleep(4)
            postgres.restart()
            restarted = time.monotonic()
            swept = scene.run("sweep", "pg")  # maybe before the owner took its lock again
            # Its 2 observers and the 2 durable ones counted again: the owner took its lock again.
            wait_for(lambda: "count 4" in scene.run("count", "pg"), timeout=30, interval=0)
            counted_again_s = time.monotonic() - restarted
            out, _ = caller.communicate(timeout=120)
            durable_out, _ = durable_caller.communicate(timeout=120)
        finally:
            for process in (caller, durable_caller):
                if process.poll() is None:
                    process.kill()
        assert caller.returncode == 0 and durable_caller.returncode == 0, "a caller raised"
        durable_lines = durable_out.splitlines()
        failed = sum(line.startswith("failed ") for line in durable_lines)
        scene.expect("pg-durable", durable_lines)
        lines = out.splitlines()
        own = [line.split()[1] for line in lines if line.startswith("ref ")]
        sent = [line.split()[1] for line in lines if line.startswith("sent ")]
        scene.expect("pg", lines)
        wait_for(scene.all_delivered, timeout=120, interval=0.5)
    records = set(scene.records())
    counts = {key: value for key, value in scene.count().items() if key != "unexpected"}  # own: below
    own_missed = sum(f"{ref} {nid}" not in records for ref in own for nid in sent)
    report(
        "PostgreSQL restarted (fast)",
        {
            **counts,
            "owner_observers_not_called_while_relocking": own_missed,
            "durable_transactions_refused": failed,
            "owner_counted_again_within_s": round(counted_again_s, 1),
        },
    )
    assert counts["lost"] == 0
    assert "removed_owner_died': 0" in swept[0]
    # Called again once the lock was back: the notifications of seconds 29-33 of 35 (the last ones
    # may find the owner already closed by the caller's exit).
    assert all(f"{ref} {nid}" in records for ref in own for nid in sent[-300:-100])


def test_postgres_stopped_for_a_minute_mid_fan_out_loses_nothing_and_parks_nothing(
    scene: Scene, postgres: PrivatePostgres
):
    """Longer than any retry budget: 8 notifications to 2,500 observers fanning out (about 10 pages each) when
    PostgreSQL stops for 60 s, and 8 more accepted while it is down. Every page waits for it."""
    scene.observe("wide", 2500, "tests.append_line_briefly", bulk=True)
    with scene.worker(OBSERVERS_BATCH_SIZE="250") as worker:
        pool = children(worker.pid)
        scene.expect("wide", scene.run("notify", "wide", "50", "0.16", "plain"))
        wait_for(lambda: len(scene.records()) >= 1000, timeout=60, interval=0.01)
        postgres.stop()
        stopped = time.monotonic()
        try:
            in_flight = scene.count()["lost"]
            # Accepted while it is down: a caller outside a transaction needs no database.
            scene.expect("wide", scene.run("notify", "wide", "50", "0.16", "plain"))
            time.sleep(max(0.0, 60 - (time.monotonic() - stopped)))
        finally:
            postgres.start()
        wait_for(scene.all_delivered, timeout=300, interval=1)
        assert worker.poll() is None and children(worker.pid) == pool, "a worker process was restarted"
        stats = scene.stats()
    counts = scene.count()
    report(
        "PostgreSQL stopped 60 s mid fan-out",
        {**counts, "undelivered_at_stop": in_flight, "dead_letters": stats["dead_letters"]},
    )
    assert in_flight > 0, "the stop came too late to test anything"
    assert counts["lost"] == 0 and counts["unexpected"] == 0
    assert stats["dead_letters"] == 0 and stats["messages_parked"] == 0

"""A process cut off from the database for longer than OBSERVERS_OWNER_GRACE: its owner is swept; back,
the process notices, closes its streams with the reason, and serves new ones with a new owner."""

import time
from collections.abc import Iterator

import pytest

from tests.conftest import wait_for
from tests.sse import EventStream

from .conftest import DATABASE, Scene, report
from .services import PG_PORT, Partition, PrivatePostgres

pytestmark = pytest.mark.faults


@pytest.fixture
def partition(postgres: PrivatePostgres) -> Iterator[Partition]:
    relay = Partition(PG_PORT)
    relay.heal()
    try:
        yield relay
    finally:
        relay.cut()


def open_stream(scene: Scene, base: str, var_id: str) -> EventStream:
    [token] = scene.printed("token", "token", var_id)
    stream = EventStream(base, [("var", var_id), ("token", token)])
    assert stream.status == 200 and stream.opened.wait(30), "the stream did not open"
    return stream


def notified_ids(stream: EventStream, var_id: str) -> set[str]:
    return {event["data"]["metadata"]["notification_id"] for event in stream.of(var_id)}


def test_a_web_process_whose_owner_was_swept_closes_its_streams_and_serves_new_ones(
    scene: Scene, partition: Partition
):
    scene.env["OBSERVERS_OWNER_GRACE"] = "2"
    web_database = f"postgres://postgres@127.0.0.1:{partition.port}/{DATABASE}"
    with scene.worker(), scene.web(DATABASE_URL=web_database) as base:
        first = open_stream(scene, base, "cut")
        try:
            before = set(scene.printed("sent", "notify", "cut", "20", "0.25", "plain"))
            wait_for(lambda: before <= notified_ids(first, "cut"), timeout=30)
            partition.cut()  # the web process alone is cut off: its session, and its owner's lock, go
            try:
                swept = scene.run("sweep", "-")  # finds it dead
                time.sleep(3)  # past OBSERVERS_OWNER_GRACE
                swept += scene.run("sweep", "-")  # removes its observers and closes it
            finally:
                partition.heal()
            wait_for(first.ended.is_set, timeout=30)
            closing = [event for event in first.events if event.get("event") == "close"]
            second = open_stream(scene, base, "cut")
            try:
                after = set(scene.printed("sent", "notify", "cut", "20", "0.5", "plain"))
                wait_for(lambda: after <= notified_ids(second, "cut"), timeout=30)
                received = notified_ids(second, "cut")
            finally:
                second.close()
        finally:
            first.close()
    report(
        "web process cut off from PostgreSQL past OBSERVERS_OWNER_GRACE, its owner swept",
        {
            "expected": len(after),
            "delivered": len(after & received),
            "lost": len(after - received),
            "duplicates": len(second.of("cut"))
            - len({e["data"]["metadata"]["notification_id"] for e in second.of("cut")}),
        },
    )
    assert any("'removed_owner_died': 1" in line for line in swept), swept
    assert closing and "reconnect" in closing[0]["data"]["reason"]

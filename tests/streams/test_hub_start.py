"""The hub's start in a web process while the broker is away: nothing leaks, and once the broker is
back one consumer takes the process's queue (a relay in front of the shared broker is cut, never the
broker itself)."""

import uuid
from pathlib import Path

import pytest

from observers_app.sources import sessions
from observers_app.streams.access import issue_token
from tests.asgi_server import running_asgi_server
from tests.conftest import wait_for
from tests.faults.services import Partition
from tests.sse import EventStream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


def threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


def test_a_failed_start_leaks_no_thread_and_the_next_one_after_the_broker_returns_works(tmp_path: Path):
    relay = Partition(5672)  # not healed yet: connections to it are refused, as to a broker that is down
    session_id = uuid.uuid4().hex[:12]
    var = sessions.variable_id(session_id, "x")
    params = [("var", var), ("token", issue_token([var]))]
    log = tmp_path / "server.log"
    broker = f"amqp://guest:guest@127.0.0.1:{relay.port}//"
    try:
        with running_asgi_server(log_to=log, CELERY_BROKER_URL=broker) as (base, process):
            refused = EventStream(base, params)
            assert refused.status == 503, refused.__dict__.get("body")
            after_one = threads(process.pid)
            statuses = [EventStream(base, params).status for _ in range(3)]
            assert statuses == [503] * 3
            # A failed start's threads end once it has answered: poll for them to be gone.
            wait_for(lambda: threads(process.pid) <= after_one, timeout=5)

            relay.heal()
            streams = [EventStream(base, params) for _ in range(3)]
            assert [stream.status for stream in streams] == [200] * 3
            for stream in streams:
                assert stream.opened.wait(10)
            sessions.set_variable(session_id, "x", "after the broker returned")
            wait_for(lambda: all(len(stream.of(var)) == 1 for stream in streams))
            for stream in streams:
                stream.close()
    finally:
        relay.cut()
    assert "RESOURCE_LOCKED" not in log.read_text()

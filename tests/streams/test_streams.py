"""Streams end to end: a real ASGI server process, a real worker and broker, a real HTTP client."""

import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from observers_app import manager
from observers_app.models import Observer
from observers_app.sources import sessions
from observers_app.streams.access import issue_token
from observers_app.telemetry import dashboard
from tests.asgi_server import running_asgi_server
from tests.conftest import start_client_process, wait_for, wait_ready
from tests.sse import EventStream
from tests.testapp.callbacks import record
from tests.testapp.models import Order

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


@pytest.fixture
def server() -> Iterator[str]:
    # No resume window: a name's observer goes with its last stream (tests/streams/test_resume.py has it).
    with running_asgi_server(OBSERVERS_STREAM_RESUME_WINDOW="0") as (base, _):
        yield base


def session_var() -> tuple[str, str]:
    """A fresh session id and its variable ``x``'s hub name."""
    session_id = uuid.uuid4().hex[:12]
    return session_id, sessions.variable_id(session_id, "x")


def open_stream(base: str, *var_ids: str) -> EventStream:
    stream = EventStream(base, [*(("var", v) for v in var_ids), ("token", issue_token(list(var_ids)))])
    assert stream.status == 200
    assert stream.opened.wait(10), "the stream sent nothing"
    return stream


def live_observers(var_id: str) -> int:
    return manager.observer_count(var_id)


def test_a_stream_sends_each_change_in_order_with_its_seq(server: str):
    session_id, var = session_var()
    stream = open_stream(server, var)
    try:
        for n in range(1, 11):
            sessions.set_variable(session_id, "x", n)
        wait_for(lambda: len(stream.of(var)) == 10)
        events = stream.of(var)
        assert [e["data"]["new_value"] for e in events] == list(range(1, 11))
        assert [e["data"]["old_value"] for e in events] == [None, *range(1, 10)]
        seqs = [int(e["id"].split(":")[1]) for e in events]  # <epoch>:<seq>
        assert seqs == list(range(seqs[0], seqs[0] + 10))
        assert [e["data"]["metadata"]["seq"] for e in events] == seqs
        assert all(e["data"]["metadata"]["session_id"] == session_id for e in events)
    finally:
        stream.close()


def test_a_glob_stream_gets_every_matching_variable(server: str):
    session_id = uuid.uuid4().hex[:12]
    other = uuid.uuid4().hex[:12]
    stream = open_stream(server, f"session:{session_id}:*")
    try:
        sessions.set_variable(session_id, "a", 1)
        sessions.set_variable(other, "a", 2)  # another session: not watched
        sessions.set_variable(session_id, "b", 3)
        wait_for(lambda: len(stream.events) == 2)
        time.sleep(0.3)  # a third event would be a bug: give it the time to show
        # Two variables: each keeps its own order (seq), not one across them (two pool processes may
        # forward them at once).
        assert sorted((e["event"], e["data"]["new_value"]) for e in stream.events) == [
            (f"session:{session_id}:a", 1),
            (f"session:{session_id}:b", 3),
        ]
    finally:
        stream.close()


def test_the_snapshot_comes_first_then_every_later_change_once(server: str):
    """A writer process sets the variable 300 times (5 ms apart, so that SQLite lets the server write
    too) while the stream connects: the stream shows the value at connect time, then each later change
    exactly once, none missing."""
    session_id, var = session_var()
    sessions.set_variable(session_id, "x", "w:start")
    warm = open_stream(server, f"warm-up:{session_id}")  # the server's hub is started: connects are quick
    writer = start_client_process("sets", session_id, "300", "w", "0.005")
    try:
        wait_for(lambda: sessions.get_variable(session_id, "x") != "w:start", timeout=30)
        time.sleep(0.05)
        stream = open_stream(server, var)
        wait_ready(writer)
        wait_for(lambda: any(e["data"]["new_value"] == "w:299" for e in stream.of(var)), timeout=30)
    finally:
        writer.wait(timeout=30)
    try:
        events = stream.of(var)
        first, changes = events[0], events[1:]
        assert first["data"]["metadata"]["snapshot"] is True
        values = [first["data"]["new_value"]] + [e["data"]["new_value"] for e in changes]
        assert len(values) == len(set(values)), "a change was sent twice"
        for before, event in zip(values, changes, strict=False):
            assert event["data"]["old_value"] == before, "a change was lost"
        assert values[-1] == "w:299"
        # Each event is the next version, or stands for the n changes a full buffer coalesced.
        for before, event in zip([first, *changes], changes, strict=False):
            step = event["data"].get("coalesced", 1)
            assert event["data"]["metadata"]["version"] == before["data"]["metadata"]["version"] + step
        assert 0 < len(changes) < 300, "the connect did not race the writer; the test proved nothing"
    finally:
        stream.close()
        warm.close()


def test_a_model_field_snapshot_and_its_change(server: str):
    order = Order.objects.create(status="new")
    var = f"testapp.order:{order.pk}:status"
    stream = open_stream(server, var)
    try:
        wait_for(lambda: len(stream.of(var)) == 1)
        order.status = "paid"
        order.save()
        wait_for(lambda: len(stream.of(var)) == 2)
        snapshot, change = stream.of(var)
        assert snapshot["data"]["new_value"] == change["data"]["old_value"]
        assert snapshot["data"]["metadata"]["snapshot"] is True
        assert change["data"]["metadata"]["event"] == "updated"
    finally:
        stream.close()


def test_a_disconnect_ends_its_watching_within_a_second(server: str):
    session_id, var = session_var()
    first, second = open_stream(server, var), open_stream(server, var)
    assert live_observers(var) == 1, "one observer per name per process, not one per stream"
    first.close()
    sessions.set_variable(session_id, "x", "after-first-left")
    wait_for(lambda: len(second.of(var)) == 1)
    assert live_observers(var) == 1
    second.close()
    closed_at = time.monotonic()
    wait_for(lambda: live_observers(var) == 0, timeout=1.0, interval=0.01)
    assert time.monotonic() - closed_at < 1.0
    assert not Observer.objects.filter(var_id=var).exists()


def test_connects_and_disconnects_leave_nothing_behind(server: str):
    session_id, var = session_var()
    for _ in range(100):
        EventStream(server, [("var", var), ("token", issue_token([var]))]).close()
    wait_for(lambda: not Observer.objects.filter(var_id=var).exists(), timeout=30)
    stream = open_stream(server, var)
    sessions.set_variable(session_id, "x", 1)
    wait_for(lambda: len(stream.of(var)) == 1)
    stream.close()


def test_the_names_a_stream_joins_are_added_in_one_batch(server: str):
    names = [session_var()[1] for _ in range(20)]
    stream = open_stream(server, *names)
    try:
        observers = Observer.objects.filter(var_id__in=names)
        assert observers.count() == 20
        assert len(set(observers.values_list("created_at", flat=True))) == 1  # one insert
    finally:
        stream.close()


def test_a_killed_web_process_is_swept(settings):
    settings.OBSERVERS_OWNER_GRACE = 0  # no database restart here: a process owner without its lock is dead
    _session_id, var = session_var()
    with running_asgi_server() as (base, process):
        stream = open_stream(base, var)
        owner_id = Observer.objects.get(var_id=var).owner_id
        assert owner_id is not None
        assert live_observers(var) == 1
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        stream.close()
        # PostgreSQL: at once (the advisory lock went with the process); SQLite: when its lease expires.
        wait_for(lambda: live_observers(var) == 0, timeout=15)
        manager.sweep()
        assert not Observer.objects.filter(var_id=var).exists()
        assert not Observer.objects.filter(owner_id=owner_id).exists()


def test_refusals_say_why(server: str):
    _, var = session_var()
    User.objects.create_user("staff", password="a-long-test-password", is_staff=True)
    User.objects.create_user("visitor", password="a-long-test-password")
    permitted("watcher")

    def refused(params: list[tuple[str, str]], status: int, reason: str, **headers: str) -> None:
        stream = EventStream(server, params, headers=headers)
        assert stream.status == status, stream.__dict__.get("body")
        assert reason in stream.body

    refused([], 400, "at least one variable")
    refused([("var", "x" * 300)], 400, "1 to 255 characters")
    refused([("var", var)] * 51, 429, "OBSERVERS_STREAM_MAX_VARS")
    refused([("var", var)], 403, "not logged in")
    refused([("var", var), ("token", "forged")], 403, "not valid")
    refused([("var", var), ("token", issue_token([var], ttl_s=-1))], 403, "expired")
    refused([("var", var), ("token", issue_token(["session:other:*"]))], 403, "does not grant")
    refused([("var", "session:*")], 403, "does not grant", Authorization=f"Bearer {issue_token([var])}")
    refused([("var", var)], 403, "may not watch", Cookie=session_cookie("visitor"))
    refused([("var", var)], 403, "may not watch", Cookie=session_cookie("staff"))  # staff alone is not enough

    watcher = EventStream(server, [("var", var)], headers={"Cookie": session_cookie("watcher")})
    assert watcher.status == 200
    watcher.close()
    granted = EventStream(
        server, [("var", "session:1:*")], headers={"Authorization": f"Bearer {issue_token(['session:*'])}"}
    )
    assert granted.status == 200
    granted.close()


def test_only_a_token_stream_is_shared_with_a_listed_origin():
    _, var = session_var()
    permitted("staff")
    origin = "http://app.example.test"  # a header's value only: nothing connects to it
    with running_asgi_server(OBSERVERS_STREAM_ALLOWED_ORIGINS=origin) as (base, _):
        token = [("var", var), ("token", issue_token([var]))]
        by_token = EventStream(base, token, headers={"Origin": origin})
        by_session = EventStream(
            base, [("var", var)], headers={"Origin": origin, "Cookie": session_cookie("staff")}
        )
        unlisted = EventStream(base, token, headers={"Origin": "http://other.example.test"})
        streams = (by_token, by_session, unlisted)
        assert [stream.status for stream in streams] == [200, 200, 200]
        allowed = [stream.response.getheader("Access-Control-Allow-Origin") for stream in streams]
        for stream in streams:
            stream.close()
    assert allowed == [origin, None, None]


def permitted(username: str) -> User:
    """A user with the observers_app.watch_variable permission, which the default authorizer asks for."""
    user = User.objects.create_user(username, password="a-long-test-password")
    user.user_permissions.add(Permission.objects.get(codename="watch_variable"))
    return user


def session_cookie(username: str) -> str:
    client = Client()
    assert client.login(username=username, password="a-long-test-password")
    return f"sessionid={client.cookies['sessionid'].value}"


def test_a_slow_reader_is_bounded_then_closed_with_the_reason(server: str):
    """A client that stops reading: its stream buffers OBSERVERS_STREAM_BUFFER (20 in tests) events,
    then the latest per variable, then closes saying why; the stats count it."""
    session_id = uuid.uuid4().hex[:12]
    pattern = f"session:{session_id}:*"
    before = manager.get_stats()
    sock = socket.create_connection(("127.0.0.1", int(server.rsplit(":", 1)[1])))
    query = f"var={pattern}&token={issue_token([pattern])}"
    sock.sendall(f"GET /observers/stream?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    wait_for(lambda: Observer.objects.filter(var_id=pattern).exists())
    big = "x" * 20_000
    for n in range(400):  # 8 MB: more than the sockets and the server's transport hold
        sessions.set_variable(session_id, f"v{n % 200}", f"{n}:{big}")
    wait_for(lambda: manager.get_stats()["streams_closed_slow"] > before["streams_closed_slow"], timeout=60)
    stats = manager.get_stats()
    assert stats["stream_events_coalesced"] > before["stream_events_coalesced"]
    received = b""
    sock.settimeout(10)
    while b"event: close" not in received:
        chunk = sock.recv(1 << 20)
        assert chunk, "the stream ended without its closing event"
        received += chunk
    assert b"slow client" in received
    assert received.count(b"event: session:") < 400
    sock.close()


def test_the_dashboard_stream_sends_the_figures_as_they_change(server: str):
    stream = open_stream(server, dashboard.VARIABLE)
    try:
        wait_for(lambda: stream.of(dashboard.VARIABLE))
        first = stream.of(dashboard.VARIABLE)[0]["data"]
        assert first["metadata"]["snapshot"] is True
        assert {"stats", "chart"} <= set(first["new_value"])
        dispatched = first["new_value"]["stats"]["notifications_dispatched"]
        var = f"dashboard:{uuid.uuid4().hex[:8]}"
        manager.add_observer(var, record)
        for n in range(3):
            manager.notify_observers(var, n, n + 1)

        def latest_dispatched() -> int:
            return stream.of(dashboard.VARIABLE)[-1]["data"]["new_value"]["stats"]["notifications_dispatched"]

        wait_for(lambda: latest_dispatched() >= dispatched + 3)
        assert not Observer.objects.filter(var_id=dashboard.VARIABLE).exists(), "no observer: polled"
    finally:
        stream.close()


def test_under_wsgi_the_stream_says_it_needs_asgi():
    response = Client().get("/observers/stream", {"var": "a"})
    assert response.status_code == 501
    assert b"ASGI" in response.content


def test_an_open_stream_holds_no_thread_of_the_server():
    """Django keeps a thread per ASGI request for its sync middleware: a stream lets it go."""

    def threads(pid: int) -> int:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))

    _, var = session_var()
    with running_asgi_server() as (base, process):
        open_stream(base, var).close()  # the hub and its threads are started
        before = threads(process.pid)
        streams = [open_stream(base, var) for _ in range(30)]
        held = threads(process.pid) - before
        for stream in streams:
            stream.close()
    assert held < 5, f"{held} more threads with 30 streams open"

"""A client's limits (streams per user, token and address; names per stream; wide globs) and a client
that stops reading: a real server process, worker and broker, real HTTP clients."""

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from observers_app import manager
from observers_app.models import Observer
from observers_app.sources import sessions
from observers_app.streams.access import issue_token
from tests.asgi_server import running_asgi_server
from tests.conftest import wait_for
from tests.sse import EventStream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]
PASSWORD = "a-long-test-password"


@pytest.fixture(autouse=True)
def quick_passwords(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A server with small limits; each test's clients connect from loopback addresses of their own."""
    log = tmp_path / "server.log"
    serving = running_asgi_server(
        log_to=log,
        OBSERVERS_STREAM_MAX_PER_TOKEN="2",
        OBSERVERS_STREAM_MAX_PER_USER="2",
        OBSERVERS_STREAM_MAX_PER_ADDRESS="4",
        OBSERVERS_STREAM_WRITE_TIMEOUT="1",
        OBSERVERS_ABSENCE_TTL="0.01",
        OBSERVERS_STREAM_RESUME_WINDOW="0",  # a stream's observer goes with it (no resume here)
    )
    with serving as (base, _):
        yield base, log


def session_cookie(username: str, **flags: Any) -> str:
    User.objects.create_user(username, password=PASSWORD, **flags)
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return f"sessionid={client.cookies['sessionid'].value}"


def test_a_client_asking_for_10000_patterns_is_refused_past_its_limit_and_others_keep_receiving(server):
    base, _ = server
    session_id = uuid.uuid4().hex[:12]
    other_var = sessions.variable_id(uuid.uuid4().hex[:12], "x")
    other = EventStream(base, [("var", other_var), ("token", issue_token([other_var]))], source="127.0.0.2")
    assert other.status == 200
    token = issue_token([f"session:{session_id}:*"])
    patterns = [f"session:{session_id}:p{n}*" for n in range(10_000)]
    before = manager.get_stats()["streams_refused_limit"]
    try:
        one_stream = EventStream(
            base, [*(("var", p) for p in patterns[:51]), ("token", token)], source="127.0.0.3"
        )
        assert one_stream.status == 429
        assert "OBSERVERS_STREAM_MAX_VARS" in one_stream.body

        streams = []
        for start in range(0, len(patterns), 50):
            params = [*(("var", p) for p in patterns[start : start + 50]), ("token", token)]
            streams.append(EventStream(base, params, source="127.0.0.3"))
        assert [s.status for s in streams[:2]] == [200] * 2
        refused = streams[2:]
        assert {s.status for s in refused} == {429}, "past OBSERVERS_STREAM_MAX_PER_TOKEN"
        assert all("OBSERVERS_STREAM_MAX_PER_TOKEN is 2" in s.body for s in refused)
        for stream in streams[:2]:
            assert stream.opened.wait(20)

        sessions.set_variable(session_id, "p0x", "granted")
        sessions.set_variable(other_var.split(":")[1], "x", "unaffected")
        wait_for(lambda: len(other.of(other_var)) == 1)
        wait_for(lambda: len(streams[0].of(f"session:{session_id}:p0x")) == 1)
        watched = Observer.objects.filter(var_id__startswith=f"session:{session_id}:")
        assert watched.count() == 100, "the refused streams' patterns are not watched"
        wait_for(lambda: manager.get_stats()["streams_refused_limit"] >= before + len(refused))
    finally:
        other.close()
        for stream in streams:
            stream.close()


def test_streams_per_user_and_per_address_are_limited_and_released(server):
    base, _ = server
    var = sessions.variable_id(uuid.uuid4().hex[:12], "x")
    cookie = {"Cookie": session_cookie("limited", is_superuser=True)}
    mine = [EventStream(base, [("var", var)], headers=cookie, source="127.0.0.4") for _ in range(3)]
    assert [s.status for s in mine] == [200, 200, 429]
    assert "OBSERVERS_STREAM_MAX_PER_USER is 2" in mine[2].body
    tokens = [
        EventStream(base, [("var", var), ("token", issue_token([var]))], source="127.0.0.4") for _ in range(3)
    ]
    assert [s.status for s in tokens] == [200, 200, 429]
    assert "OBSERVERS_STREAM_MAX_PER_ADDRESS is 4" in tokens[2].body
    elsewhere = EventStream(base, [("var", var), ("token", issue_token([var]))], source="127.0.0.5")
    assert elsewhere.status == 200
    mine[0].close()

    def reopened() -> bool:
        stream = EventStream(base, [("var", var)], headers=cookie, source="127.0.0.4")
        mine.append(stream)
        return stream.status == 200

    wait_for(reopened, interval=0.2)
    for stream in [*mine, *tokens, elsewhere]:
        stream.close()


def test_a_wide_glob_needs_its_own_permission(server):
    base, _ = server
    staff = {"Cookie": session_cookie("narrow", is_superuser=False, is_staff=True)}
    narrow = User.objects.get(username="narrow")
    narrow.user_permissions.add(Permission.objects.get(codename="watch_variable"))
    superuser = {"Cookie": session_cookie("wide", is_superuser=True)}
    refused = EventStream(base, [("var", "*")], headers=staff, source="127.0.0.6")
    assert refused.status == 403
    assert "observers_app.watch_wide_glob" in refused.body
    assert EventStream(base, [("var", "ses*")], headers=staff, source="127.0.0.6").status == 403
    allowed = [
        EventStream(base, [("var", "sess*")], headers=superuser, source="127.0.0.6"),
        EventStream(base, [("var", "*")], headers=superuser, source="127.0.0.6"),
    ]
    assert [s.status for s in allowed] == [200, 200]
    for stream in allowed:
        stream.close()


def test_a_client_that_stops_reading_is_closed_after_the_write_timeout(server):
    """Fewer changes than the stream's buffer holds, but more bytes than the sockets do: only the
    write timeout (1 s here) ends the stream."""
    base, log = server
    session_id = uuid.uuid4().hex[:12]
    pattern = f"session:{session_id}:*"
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind(("127.0.0.7", 0))
    sock.connect(("127.0.0.1", int(base.rsplit(":", 1)[1])))
    query = f"var={pattern}&token={issue_token([pattern])}"
    sock.sendall(f"GET /observers/stream?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    wait_for(lambda: Observer.objects.filter(var_id=pattern).exists())
    big = "x" * 230_000
    for n in range(35):  # 8 MB in 35 changes: the buffer (20, coalescing up to 40) never overflows
        sessions.set_variable(session_id, f"v{n}", f"{n}:{big}")
    wait_for(lambda: "event=stream_write_timeout" in log.read_text(), timeout=60)
    wait_for(lambda: not Observer.objects.filter(var_id=pattern).exists(), timeout=5)
    sock.settimeout(10)
    while sock.recv(1 << 20):  # what the server had already written, then the end of the stream
        pass
    sock.close()

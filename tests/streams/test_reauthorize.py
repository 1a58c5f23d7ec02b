"""An open stream stays authorized or ends: its token's expiry, its user logged out, deactivated or
stripped of the permission close it with the reason (a real server process, real HTTP clients)."""

import uuid
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.test import Client

from observers_app import manager
from observers_app.sources import sessions
from observers_app.streams.access import issue_token
from tests.asgi_server import running_asgi_server
from tests.conftest import wait_for
from tests.sse import EventStream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]
PASSWORD = "a-long-test-password"


@pytest.fixture
def server() -> Iterator[str]:
    with running_asgi_server(OBSERVERS_STREAM_REAUTHORIZE_INTERVAL="0.3") as (base, _):
        yield base


def watcher(username: str) -> tuple[User, Client]:
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return user, client


def open_as(base: str, client: Client, var: str) -> EventStream:
    stream = EventStream(
        base, [("var", var)], headers={"Cookie": f"sessionid={client.cookies['sessionid'].value}"}
    )
    assert stream.status == 200, stream.__dict__.get("body")
    assert stream.opened.wait(10)
    return stream


def closed_with(stream: EventStream) -> str:
    """The reason of the stream's last event, a ``close``, once the server ended the stream."""
    assert stream.ended.wait(10), "the stream is still open"
    assert stream.events and stream.events[-1]["event"] == "close", stream.events[-3:]
    return str(stream.events[-1]["data"]["reason"])


def test_a_token_stream_closes_when_its_token_expires(server: str):
    var = sessions.variable_id(uuid.uuid4().hex[:12], "x")
    stream = EventStream(server, [("var", var), ("token", issue_token([var], ttl_s=1.5))])
    assert stream.status == 200
    assert "expired" in closed_with(stream)


def test_a_session_stream_closes_once_its_user_loses_the_right_to_it(server: str):
    session_id = uuid.uuid4().hex[:12]
    var = sessions.variable_id(session_id, "x")
    before = manager.get_stats()["streams_closed_unauthorized"]
    _, kept_client = watcher("kept")
    _, left_client = watcher("left")
    deactivated, deactivated_client = watcher("deactivated")
    stripped, stripped_client = watcher("stripped")
    streams = {
        name: open_as(server, client, var)
        for name, client in [
            ("kept", kept_client),
            ("left", left_client),
            ("deactivated", deactivated_client),
            ("stripped", stripped_client),
        ]
    }
    left_client.logout()
    deactivated.is_active = False
    deactivated.save()
    stripped.is_staff = False
    stripped.save()
    assert "logged out" in closed_with(streams["left"])
    assert "no longer authorized" in closed_with(streams["deactivated"])
    assert "may not watch" in closed_with(streams["stripped"])
    sessions.set_variable(session_id, "x", "still watched")
    wait_for(lambda: len(streams["kept"].of(var)) == 1)
    assert not streams["kept"].ended.is_set()
    streams["kept"].close()
    wait_for(lambda: manager.get_stats()["streams_closed_unauthorized"] >= before + 3)

"""An open stream stays authorized or ends: its token's expiry, its user logged out, deactivated or
stripped of the permission close it with the reason (a real server process, real HTTP clients)."""

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Permission, User
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
    """A user with the permission the default authorizer asks for, logged in."""
    user = User.objects.create_user(username, password=PASSWORD)
    user.user_permissions.add(Permission.objects.get(codename="watch_variable"))
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


def test_a_session_stream_closes_once_its_user_loses_the_right_to_it(server: str, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # 8 hashes: keep them quick
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
    stripped.user_permissions.clear()
    assert "logged out" in closed_with(streams["left"])
    assert "no longer authorized" in closed_with(streams["deactivated"])
    assert "may not watch" in closed_with(streams["stripped"])
    sessions.set_variable(session_id, "x", "still watched")
    wait_for(lambda: len(streams["kept"].of(var)) == 1)
    assert not streams["kept"].ended.is_set()
    streams["kept"].close()
    wait_for(lambda: manager.get_stats()["streams_closed_unauthorized"] >= before + 3)


def test_revoked_tokens_are_refused_and_their_open_streams_close(server: str):
    session_id = uuid.uuid4().hex[:12]
    var = sessions.variable_id(session_id, "x")
    user = User.objects.create_user("holder", password=PASSWORD)

    def opened(token: str) -> EventStream:
        stream = EventStream(server, [("var", var), ("token", token)])
        assert stream.status == 200, stream.__dict__.get("body")
        assert stream.opened.wait(10)
        return stream

    users_token, one_token, kept_token = issue_token([var], user=user), issue_token([var]), issue_token([var])
    of_user, one, kept = opened(users_token), opened(one_token), opened(kept_token)
    manager.revoke_tokens(token=one_token)
    assert "revoked" in closed_with(one)
    asyncio.run(manager.arevoke_tokens(user))
    assert "revoked" in closed_with(of_user)
    for token in (one_token, users_token):  # refused at open, in every process (the database says so)
        refused = EventStream(server, [("var", var), ("token", token)])
        assert refused.status == 403
        assert "revoked" in refused.body
    after = opened(issue_token([var], user=user))  # issued after the revocation
    sessions.set_variable(session_id, "x", "still watched")
    wait_for(lambda: len(kept.of(var)) == 1 and len(after.of(var)) == 1)
    for stream in (kept, after):
        stream.close()

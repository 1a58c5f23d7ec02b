"""Streams that resume: a reconnect with the id of the last event it got is sent exactly what it
missed, then what comes live; a reset and a snapshot when the history cannot cover the gap. A real
server, a real worker, a real client."""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from observers_app import manager
from observers_app.streams import resume
from observers_app.streams.access import issue_token
from tests.asgi_server import running_asgi_server
from tests.conftest import wait_for
from tests.factories import unique_var
from tests.sse import EventStream
from tests.testapp.callbacks import record

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


@pytest.fixture
def server() -> Iterator[str]:
    # A buffer that holds a burst of 500 live changes: a smaller one coalesces them (a slow reader's
    # bound, tests/streams/test_streams.py), which is not what these tests look at.
    with running_asgi_server(OBSERVERS_STREAM_RESUME_WINDOW="30", OBSERVERS_STREAM_BUFFER="1000") as (
        base,
        _,
    ):
        yield base


def open_stream(base: str, *keys: str, last_event_id: str | None = None, header: bool = True) -> EventStream:
    params = [*(("var", key) for key in keys), ("token", issue_token(list(keys)))]
    headers = {}
    if last_event_id is not None and header:
        headers["Last-Event-ID"] = last_event_id
    elif last_event_id is not None:
        params.append(("last_event_id", last_event_id))
    stream = EventStream(base, params, headers=headers)
    assert stream.status == 200
    assert stream.opened.wait(10), "the stream sent nothing"
    return stream


def changes(stream: EventStream, *var_ids: str) -> list[dict[str, Any]]:
    return [event for event in stream.events if event.get("event") in var_ids]


def seqs(events: list[dict[str, Any]]) -> list[int]:
    return [event["data"]["metadata"]["seq"] for event in events]


def test_a_client_away_while_500_changes_happen_gets_all_500_then_live_ones(server: str):
    var = unique_var("resume")
    stream = open_stream(server, var)
    manager.notify_observers(var, 0, 1)
    wait_for(lambda: len(changes(stream, var)) == 1)
    last_id = stream.events[-1]["id"]
    epoch = manager.history(var).epoch
    assert last_id == f"{epoch}:1"
    stream.close()

    for n in range(2, 502):
        manager.notify_observers(var, n - 1, n)
    # Every one kept (several still on their way to the server, which must not send them twice).
    wait_for(lambda: len(manager.history(var, after_seq=1, limit=1000).entries) == 500, timeout=60)
    back = open_stream(server, var, last_event_id=last_id)
    try:
        wait_for(lambda: len(changes(back, var)) >= 500, timeout=60)
        manager.notify_observers(var, 501, 502)
        wait_for(lambda: len(changes(back, var)) >= 501)
        got = changes(back, var)
        assert seqs(got) == list(range(2, 503))  # each once, in order
        # The order the worker numbered them in (ordered=False: not the order they were sent).
        assert sorted(event["data"]["new_value"] for event in got) == list(range(2, 503))
        assert [event["id"] for event in got] == [f"{epoch}:{n}" for n in range(2, 503)]
        assert not [event for event in back.events if event.get("event") == "reset"]
    finally:
        back.close()


def test_a_glob_stream_away_while_500_changes_happen_gets_all_500(server: str):
    prefix = f"resume-glob:{uuid.uuid4().hex[:8]}"
    var_ids = [f"{prefix}:{n}" for n in range(5)]
    stream = open_stream(server, f"{prefix}:*")
    manager.notify_observers(var_ids[0], 0, 1)
    wait_for(lambda: len(changes(stream, *var_ids)) == 1)
    last_id = stream.events[-1]["id"]
    assert last_id.startswith("m ")
    stream.close()

    for n in range(1, 101):
        for var in var_ids:
            manager.notify_observers(var, n, n + 1)
    wait_for(lambda: sum(len(manager.history(var, limit=1000).entries) for var in var_ids) == 501, timeout=60)
    back = open_stream(server, f"{prefix}:*", last_event_id=last_id, header=False)  # ?last_event_id=
    try:
        wait_for(lambda: len(changes(back, *var_ids)) >= 500, timeout=60)
        manager.notify_observers(var_ids[1], 101, 102)
        wait_for(lambda: len(changes(back, *var_ids)) >= 501)
        got = changes(back, *var_ids)
        assert seqs(changes(back, var_ids[0])) == list(range(2, 102))
        assert seqs(changes(back, var_ids[1])) == list(range(1, 102))
        for var in var_ids[2:]:
            assert seqs(changes(back, var)) == list(range(1, 101))
        assert len(got) == 501
        assert not [event for event in back.events if event.get("event") == "reset"]
    finally:
        back.close()


def test_a_client_away_longer_than_the_history_keeps_gets_a_reset_then_the_snapshot(server: str, settings):
    var = unique_var("pruned")
    manager.add_observer(var, record)  # the variable stays observed: only the history's bound is in play
    stream = open_stream(server, var)
    manager.notify_observers(var, 0, 1)
    wait_for(lambda: len(changes(stream, var)) == 1)
    last_id = stream.events[-1]["id"]
    stream.close()
    for n in range(2, 22):
        manager.notify_observers(var, n - 1, n)
    wait_for(lambda: len(manager.history(var, after_seq=1).entries) == 20)
    settings.OBSERVERS_HISTORY_MAX_ENTRIES = 5
    manager.sweep()

    back = open_stream(server, var, last_event_id=last_id)
    try:
        wait_for(lambda: back.events)
        first = back.events[0]
        assert first["event"] == "reset"
        assert "pruned" in first["data"]["reason"]
        manager.notify_observers(var, 21, 22)
        # Then live changes (one still on its way when it reconnected may come first).
        wait_for(lambda: 22 in seqs(changes(back, var)))
        assert seqs(changes(back, var)) == sorted(set(seqs(changes(back, var))))
    finally:
        back.close()


def test_an_id_that_is_not_the_streams_gets_a_reset(server: str, tmp_path):
    var = unique_var("stranger")
    back = open_stream(server, var, last_event_id="m 12 x 1:2")
    try:
        wait_for(lambda: back.events)
        assert back.events[0]["event"] == "reset"
        assert "not one of this stream's" in back.events[0]["data"]["reason"]
    finally:
        back.close()


def test_a_name_left_unobserved_gets_a_new_epoch_and_its_reconnect_a_reset():
    var = unique_var("unobserved")
    with running_asgi_server(OBSERVERS_STREAM_RESUME_WINDOW="0") as (base, _):
        stream = open_stream(base, var)
        manager.notify_observers(var, 0, 1)
        wait_for(lambda: len(changes(stream, var)) == 1)
        last_id = stream.events[-1]["id"]
        stream.close()
        wait_for(lambda: manager.observer_count(var) == 0, timeout=10)
        assert manager.history(var).epoch != last_id.split(":")[0]

        back = open_stream(base, var, last_event_id=last_id)
        try:
            wait_for(lambda: back.events)
            assert back.events[0]["event"] == "reset"
            assert "restarted" in back.events[0]["data"]["reason"]
        finally:
            back.close()


@pytest.mark.parametrize(
    ("keys", "text"),
    [
        (["a"], "0a1b2c3d:7"),
        (["a"], ":0"),
        (["a", "b*"], "m 1700000000123 a 0a1b2c3d:7 b%2A 0a1b2c3d:0"),
        (["p:*"], "m 1700000000123 p%3A%20x%25 ff:3"),
    ],
)
def test_an_id_reads_back_as_it_was_written(keys: list[str], text: str):
    positions = resume.parse(text, keys)
    assert positions is not None
    assert positions.text() == text


@pytest.mark.parametrize(
    ("keys", "text"),
    [
        (["a"], "7"),
        (["a"], "x y:1"),
        (["a"], "ab:-1"),
        (["a", "b"], "0a:1"),
        (["a*"], "m x"),
        (["a*"], "m 1 a"),
    ],
)
def test_an_id_this_stream_could_not_have_sent_is_refused(keys: list[str], text: str):
    assert resume.parse(text, keys) is None


def test_a_stream_that_sent_too_many_variables_says_it_cannot_resume():
    started = datetime.now(tz=UTC)
    positions = resume.Positions(single=False, started=started)
    for n in range(resume.MAX_POSITIONS + 1):
        positions.marks[f"v{n}"] = ("e1", 1)
    assert positions.text() == resume.NOT_RESUMABLE
    assert resume.parse(resume.NOT_RESUMABLE, ["v*"]) is None

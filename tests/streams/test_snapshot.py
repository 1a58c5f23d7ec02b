"""A stream's snapshot reads each variable under the name the hub notifies it by."""

import pytest

from observers_app.sources import sessions
from observers_app.streams import snapshot

pytestmark = pytest.mark.django_db


def values(var_ids: list[str]) -> dict[str, object]:
    return {event.var_id: event.data["new_value"] for event in snapshot.read(var_ids)}


def test_a_session_id_holding_the_separator_or_a_percent_gets_its_own_snapshot():
    sessions.set_variable("42:x", "cart", "escaped")
    sessions.set_variable("42", "x:cart", "plain")  # "session:42:x:cart" unescaped: the wrong one
    sessions.set_variable("7%3A1", "cart", "percent")
    colon = sessions.variable_id("42:x", "cart")
    percent = sessions.variable_id("7%3A1", "cart")
    assert colon == "session:42%3Ax:cart"
    assert values([colon]) == {colon: "escaped"}
    assert values([percent]) == {percent: "percent"}
    assert values(["session:42%3Ax:*"]) == {colon: "escaped"}
    assert values(["session:7%253A1:c*"]) == {percent: "percent"}
    assert values(["session:42:*"]) == {sessions.variable_id("42", "x:cart"): "plain"}

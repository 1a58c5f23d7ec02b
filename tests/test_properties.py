"""Property: whatever names, values and metadata a caller passes, the hub refuses them with one of its
own errors or delivers exactly the value sent; never a database error, never a lost neighbour."""

import itertools
import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from observers_app import manager
from observers_app.exceptions import ObserversError
from observers_app.sources import sessions
from tests.conftest import wait_for
from tests.testapp.callbacks import record_json
from tests.testapp.models import Received

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]

# Few examples: each one waits for real deliveries through the broker and a worker.
EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

HOSTILE = st.sampled_from(["\x00", "\ud800", "\udfff", "\n", "\t", ":", "%", "*", "é", "😀", " "])
hostile_text = st.text(alphabet=st.characters() | HOSTILE, max_size=12)
plain_text = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cs")) | st.sampled_from(":%*"), min_size=1, max_size=30
)
text = plain_text | hostile_text
long_names = st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs")), min_size=250, max_size=260)
names = st.one_of(plain_text, plain_text, plain_text, plain_text, hostile_text, long_names)
keys = st.one_of(text, text, text, st.integers())
parts = st.one_of(*[plain_text] * 8, hostile_text, long_names)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | text
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.tuples(children)
        | st.dictionaries(text | st.integers(), children, max_size=3)
    ),
    max_leaves=8,
)
metadatas = st.none() | st.dictionaries(keys, values, max_size=3)

NEIGHBOUR = f"neighbour:{uuid.uuid4().hex[:12]}"
_counter = itertools.count()


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def refused_by_the_hub(call: Any) -> tuple[bool, Any]:
    """(True, None) when the hub refused the call with one of its errors; any other error fails."""
    try:
        return False, call()
    except ObserversError as exc:
        event(f"refused: {type(exc).__name__}")
        return True, None


def notify_neighbour() -> None:
    """A good notification right after: it must be delivered whatever came before it."""
    value = next(_counter)
    notification_id = manager.notify_observers(NEIGHBOUR, None, value)
    wait_for(lambda: Received.objects.filter(var_id=NEIGHBOUR, metadata__notification_id=notification_id))


@pytest.fixture(autouse=True)
def neighbour_observer() -> None:
    manager.add_observer(NEIGHBOUR, record_json)


@EXAMPLES
@given(var_id=names, old=values, new=values, metadata=metadatas)
def test_notify_refuses_or_delivers_exactly_what_was_sent(var_id, old, new, metadata):
    refused, ref = refused_by_the_hub(lambda: manager.add_observer(var_id, record_json))
    if not refused:
        try:
            refused, notification_id = refused_by_the_hub(
                lambda: manager.notify_observers(var_id, old, new, metadata)
            )
            if not refused and notification_id is not None:
                received = wait_for(
                    lambda: (
                        Received.objects.filter(var_id=var_id, metadata__notification_id=notification_id)
                        .values_list("old_value", "new_value", "metadata")
                        .first()
                    )
                )
                event("delivered")
                assert received[:2] == (canonical(old), canonical(new))
                delivered = json.loads(received[2]["json"])
                assert canonical({key: delivered[key] for key in metadata or {}}) == canonical(metadata or {})
            elif not refused:
                assert canonical(old) == canonical(new)  # None only when nothing changed
        finally:
            manager.remove_observer(var_id, ref)
    notify_neighbour()


@EXAMPLES
@given(session_id=parts, name=parts, value=values, metadata=metadatas)
def test_session_store_refuses_or_delivers_exactly_what_was_set(session_id, name, value, metadata):
    refused, var_id = refused_by_the_hub(lambda: sessions.variable_id(session_id, name))
    if not refused:
        ref = manager.add_observer(var_id, record_json)
        try:
            before = sessions.get_variable(session_id, name)
            refused, version = refused_by_the_hub(
                lambda: sessions.set_variable(session_id, name, value, metadata)
            )
            if not refused:
                assert sessions.get_variable(session_id, name) == json.loads(canonical(value))
                if canonical(before) != canonical(value):
                    received = wait_for(
                        lambda: (
                            Received.objects.filter(var_id=var_id, metadata__version=version)
                            .values_list("old_value", "new_value")
                            .first()
                        )
                    )
                    event("delivered")
                    assert received == (canonical(before), canonical(value))
        finally:
            manager.remove_observer(var_id, ref)
    notify_neighbour()

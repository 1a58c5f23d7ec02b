"""Webhook retries through broker faults: parked retries released while the broker is away; a receiver
answering in forms the hub cannot read."""

import json

import pytest

from tests.conftest import wait_for
from tests.receivers import Receiver, Reply, running_receiver

from .conftest import Scene, report
from .services import PrivateRabbit

pytestmark = pytest.mark.faults


def message_ids(receiver: Receiver) -> list[str]:
    return [json.loads(request.body)["data"]["metadata"]["notification_id"] for request in receiver.requests]


def webhook(scene: Scene, var_id: str, url: str) -> str:
    [ref] = scene.printed("ref", "webhook", var_id, url)
    return ref


def test_parked_retries_released_while_the_broker_is_away_are_kept(scene: Scene, rabbit: PrivateRabbit):
    """The sweep sends the parked retries now due while the broker is away: none may be deleted unsent."""
    with running_receiver() as receiver:
        ref = webhook(scene, "parked", receiver.url)
        parked = scene.printed("sent", "park-retries", ref, "50")
        rabbit.stop_app()
        try:
            released = scene.run("release-retries", "-")  # the sweep's step, while the broker is away
        finally:
            rabbit.start_app()
        with scene.worker():
            scene.run("sweep", "-")
            try:
                wait_for(lambda: set(parked) <= set(message_ids(receiver)), timeout=60)
            finally:
                received = message_ids(receiver)
    report(
        "parked webhook retries released while the broker is away",
        {
            "expected": len(parked),
            "delivered": len(set(parked) & set(received)),
            "lost": len(set(parked) - set(received)),
            "duplicates": len(received) - len(set(received)),
        },
    )
    assert released == ["released 0"], released


# Replies the hub cannot read, each then followed by a 200: whether it retries after it, and why.
BAD_FORMS = {
    "retry-after-superscript": (Reply(429, {"Retry-After": "\u00b2"}), True),
    "retry-after-zone-0000": (Reply(429, {"Retry-After": "Thu, 01 Jan 2026 12:00:00 -0000"}), True),
    "malformed-location": (Reply(302, {"Location": "http://a..b/"}), False),  # an empty host label
    "nul-in-the-body": (Reply(500, body=b"broken \x00 reply"), True),
}


def attempts_after(scene: Scene, form: str, reply: Reply, retried: bool) -> list[str]:
    """Notify a webhook whose receiver answers ``reply`` first, then 200; its attempts as recorded."""
    wanted = 2 if retried else 1
    with running_receiver() as receiver:
        receiver.script = [reply]
        ref = webhook(scene, f"form:{form}", receiver.url)
        scene.run("notify", f"form:{form}", "1", "0.5", "plain")
        wait_for(lambda: len(receiver.requests) >= wanted, timeout=60, interval=0.2)
        return wait_for(
            lambda: (lines := scene.run("attempts", ref)) and len(lines) >= wanted and lines, timeout=30
        )


def test_a_receiver_answering_in_forms_the_hub_cannot_read_fails_only_that_attempt(scene: Scene):
    """Each bad form is an attempt recorded as failed (retried, or not, as its status says), never an
    error that ends the task and loses the message without a trace."""
    with scene.worker():
        outcomes = {
            form: attempts_after(scene, form, reply, retried) for form, (reply, retried) in BAD_FORMS.items()
        }
    delivered = sum(
        lines[-1].startswith("attempt 2 200") for form, lines in outcomes.items() if BAD_FORMS[form][1]
    )
    report(
        "webhook receiver answering in bad forms (4 forms)",
        {
            "expected": 3,
            "delivered": delivered,
            "lost": 3 - delivered,
            "attempts_recorded": sum(map(len, outcomes.values())),
        },
    )
    assert delivered == 3
    assert "unusable reply" in outcomes["malformed-location"][0]

"""Webhook retries through broker faults: parked retries released while the broker is away, a near retry
sent into a blocked broker that then crashes, a receiver answering in forms the hub cannot read."""

import json
import threading
import time

import pytest

from tests.conftest import wait_for
from tests.receivers import Receiver, Reply, running_receiver

from .conftest import Scene, report
from .services import PrivateRabbit

pytestmark = pytest.mark.faults


def message_ids(receiver: Receiver) -> list[str]:
    return [json.loads(request.body)["data"]["metadata"]["notification_id"] for request in receiver.requests]


def webhook(scene: Scene, var_id: str, url: str) -> str:
    [ref] = [line.split()[1] for line in scene.run("webhook", var_id, url) if line.startswith("ref ")]
    return ref


def test_parked_retries_released_while_the_broker_is_away_are_kept(scene: Scene, rabbit: PrivateRabbit):
    """The sweep sends the parked retries now due while the broker is away: none may be deleted unsent."""
    with running_receiver() as receiver:
        ref = webhook(scene, "parked", receiver.url)
        parked = [
            line.split()[1] for line in scene.run("park-retries", ref, "50") if line.startswith("sent ")
        ]
        rabbit.stop_app()
        try:
            released = scene.run("release-retries", "-")  # the sweep's step, while the broker is away
        finally:
            rabbit.start_app()
        with scene.worker():
            scene.run("sweep", "-")
            wait_for(lambda: set(parked) <= set(message_ids(receiver)), timeout=60)
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
    assert released == ["released 0"]


def test_a_near_retry_sent_into_a_blocked_broker_that_then_crashes_is_not_lost(
    scene: Scene, rabbit: PrivateRabbit
):
    """An attempt times out while a memory alarm blocks the broker; its retry (a countdown) is published
    then, and the broker is killed and restarted before it took it: the retry still comes."""
    alarm_set = threading.Event()
    with running_receiver() as receiver:
        receiver.script = [Reply(200, delay_s=8)]  # past OBSERVERS_WEBHOOK_TIMEOUT: a timeout, retried
        webhook(scene, "near", receiver.url)
        with scene.worker(OBSERVERS_WEBHOOK_TIMEOUT="5"):
            lines = scene.run("notify", "near", "1", "0.5", "plain")
            [notification] = [line.split()[1] for line in lines if line.startswith("sent ")]

            def alarm_on_first_attempt() -> None:
                wait_for(lambda: receiver.requests, timeout=60, interval=0.01)
                rabbit.set_memory_alarm(True)
                alarm_set.set()

            thread = threading.Thread(target=alarm_on_first_attempt)
            thread.start()
            try:
                thread.join(90)
                assert alarm_set.is_set(), "the first attempt never came"
                time.sleep(12)  # the attempt timed out (5 s) and its retry was handed to the blocked broker
                rabbit.kill()  # what a blocked broker had not read yet is gone
                time.sleep(2)
                rabbit.start()
            finally:
                rabbit.set_memory_alarm(False)
            # A retry the broker did not take waits in the database for the sweep (beat's, here the test's).
            wait_for(
                lambda: scene.run("sweep", "-") and len(receiver.requests) >= 2, timeout=90, interval=0.5
            )
    received = message_ids(receiver)
    report(
        "near webhook retry into a blocked broker, then killed",
        {
            "expected": 1,
            "delivered": int(notification in received[1:]),
            "lost": int(notification not in received[1:]),
        },
    )
    assert received.count(notification) >= 2  # the first attempt, and its retry


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

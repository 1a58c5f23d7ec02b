"""Webhook observers end to end: a real worker POSTs to real HTTP servers on 127.0.0.1."""

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError, connection
from django.db.models.signals import pre_delete
from django.utils import timezone
from standardwebhooks import Webhook

from observers_app import manager, wiring
from observers_app.exceptions import WebhookRefused
from observers_app.models import Observer, WebhookAttempt, WebhookEndpoint, WebhookRetry
from observers_app.webhooks import attempts, messages, store
from project.celery import app
from tests.conftest import wait_for
from tests.factories import unique_var
from tests.receivers import Receiver, Reply, running_receiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]

# Longer than the test schedule's first retry delays (0.2 s, 0.4 s): nothing more came by then.
QUIET_S = 1.5


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as receiver:
        yield receiver


@pytest.fixture
def trap() -> Iterator[Receiver]:
    """A server on 127.0.0.2, a loopback address the guard must refuse: it must never be reached."""
    with running_receiver("127.0.0.2") as trap:
        yield trap


def attempts_of(ref: uuid.UUID) -> list[WebhookAttempt]:
    return list(WebhookAttempt.objects.filter(endpoint_id=ref).order_by("id"))


def test_a_notification_is_posted_signed_per_standard_webhooks(receiver):
    var = unique_var("hook")
    ref = manager.add_webhook(var, receiver.url)
    assert ref.secret.startswith("whsec_")
    assert manager.observer_count(var) == 1
    inspected = manager.inspect_variable(var)["observers"][0]
    assert (inspected["callback"], inspected["webhook_url"]) == (WebhookEndpoint.CALLBACK, receiver.url)

    notification_id = manager.notify_observers(var, {"a": 1}, {"a": 2}, {"source": "test"})
    assert notification_id is not None

    wait_for(lambda: receiver.requests)
    request = receiver.requests[0]
    # Verified by an independent implementation of the specification.
    payload = Webhook(ref.secret).verify(request.body, request.headers)
    assert payload["type"] == "variable.changed"
    assert payload["data"]["variable"] == var
    assert (payload["data"]["old"], payload["data"]["new"]) == ({"a": 1}, {"a": 2})
    metadata = payload["data"]["metadata"]
    assert metadata["source"] == "test" and metadata["notification_id"] == notification_id
    assert metadata["observer_ref"] == str(ref)
    assert request.headers["webhook-id"] == messages.message_id(notification_id, str(ref))
    assert request.headers["Host"] == receiver.url.split("/")[2]
    attempt = wait_for(lambda: WebhookAttempt.objects.filter(endpoint_id=ref).first())
    assert attempt.status_code == 200 and attempt.attempt == 1 and attempt.next_retry_at is None
    with pytest.raises(Exception, match="signature"):
        Webhook(manager.add_webhook(var, receiver.url).secret).verify(request.body, request.headers)


def test_a_glob_webhook_bound_to_an_owner_gets_each_matching_name_until_its_owner_closes(receiver):
    prefix = unique_var("glob")
    with manager.open_owner("hooks-client", ttl_s=60) as lease:
        ref = manager.add_webhook(f"{prefix}:*", receiver.url, glob=True, owner=lease)
        assert manager.observer_count(f"{prefix}:a") == 1
        manager.notify_observers(f"{prefix}:a", 1, 2)
        manager.notify_observers(f"{prefix}:b", 3, 4)
        wait_for(lambda: len(receiver.requests) == 2)
    variables = {json.loads(r.body)["data"]["variable"] for r in receiver.requests}
    assert variables == {f"{prefix}:a", f"{prefix}:b"}
    assert not WebhookEndpoint.objects.filter(observer_id=ref).exists()
    assert (manager.removal_of(ref) or {}).get("reason") == "owner_closed"


def test_the_task_reads_an_endpoint_as_the_orm_wrote_it(receiver):
    var = unique_var("store")
    ref = manager.add_webhook(var, receiver.url)
    when = timezone.now().replace(microsecond=0)
    endpoint = WebhookEndpoint.objects.filter(observer_id=ref)
    endpoint.update(last_success_at=when, failures=2, failing_since=when)
    Observer.objects.filter(id=ref).update(quarantined_at=when)

    assert store.load(ref) == store.Endpoint(
        ref=ref,
        url=receiver.url,
        secret=ref.secret,
        failures=2,
        failing=True,
        last_success_at=when,
        disabled=True,
        var_id=var,
        callback=WebhookEndpoint.CALLBACK,
        owner_id=None,
    )
    assert store.load(uuid.uuid4()) is None


def test_an_attempt_for_a_removed_endpoint_is_refused_by_the_database():
    with pytest.raises(IntegrityError):
        store.add_attempt(
            uuid.uuid4(),
            message_id="m",
            attempt=1,
            status_code=200,
            latency_ms=1,
            error="",
            next_retry_at=None,
        )


def test_a_removal_locks_the_endpoint_so_an_attempt_written_meanwhile_waits_and_is_refused(receiver):
    var = unique_var("race")
    ref = manager.add_webhook(var, receiver.url)
    outcome: list[str] = []
    waited: list[bool] = []

    def write_attempt() -> None:
        try:
            store.add_attempt(
                ref, message_id="m", attempt=1, status_code=200, latency_ms=1, error="", next_retry_at=None
            )
            outcome.append("written")
        except IntegrityError:
            outcome.append("refused")
        finally:
            connection.close()

    def write_while_removing(sender: object, **kwargs: object) -> None:
        # Sent once the endpoint is locked, before its attempts and itself are deleted: without the
        # lock, an attempt written now would be committed between those two deletions.
        writer = threading.Thread(target=write_attempt)
        writer.start()
        writer.join(timeout=1)
        waited.append(writer.is_alive())

    pre_delete.connect(write_while_removing, sender=WebhookEndpoint, dispatch_uid="test-race")
    try:
        assert manager.remove_observer(var, ref)
    finally:
        pre_delete.disconnect(sender=WebhookEndpoint, dispatch_uid="test-race")
    wait_for(lambda: outcome, timeout=30)
    assert waited == [True] and outcome == ["refused"]
    assert not WebhookEndpoint.objects.filter(observer_id=ref).exists()


def test_a_given_secret_is_used_and_removal_deletes_the_endpoint(receiver):
    var = unique_var("given")
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    ref = manager.add_webhook(var, receiver.url, secret=secret)
    assert ref.secret == secret

    assert manager.remove_observer(var, ref)
    assert not WebhookEndpoint.objects.filter(observer_id=ref).exists()
    assert (manager.removal_of(ref) or {}).get("reason") == "removed"
    manager.notify_observers(var, 1, 2)
    time.sleep(QUIET_S)
    assert receiver.requests == []


def test_a_500_is_retried_with_the_same_message_until_it_succeeds(receiver):
    receiver.script = [Reply(500), Reply(503)]
    var = unique_var("retry")
    ref = manager.add_webhook(var, receiver.url)

    manager.notify_observers(var, 1, 2)

    wait_for(lambda: len(attempts_of(ref)) == 3)
    attempts = attempts_of(ref)
    assert [a.status_code for a in attempts] == [500, 503, 200]
    assert [a.attempt for a in attempts] == [1, 2, 3]
    assert all(a.next_retry_at for a in attempts[:2]) and attempts[2].next_retry_at is None
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    for request in receiver.requests:
        Webhook(ref.secret).verify(request.body, request.headers)
    endpoint = WebhookEndpoint.objects.get(observer_id=ref)
    assert endpoint.failures == 0 and endpoint.last_success_at is not None


@pytest.mark.parametrize("status", [400, 410])
def test_a_4xx_is_not_retried(receiver, status):
    receiver.default = Reply(status)
    var = unique_var(f"http{status}")
    ref = manager.add_webhook(var, receiver.url)

    manager.notify_observers(var, 1, 2)

    attempt = wait_for(lambda: WebhookAttempt.objects.filter(endpoint_id=ref).first())
    time.sleep(QUIET_S)
    assert len(receiver.requests) == 1
    assert attempt.status_code == status and attempt.next_retry_at is None
    assert f"HTTP {status}" in attempt.error


def test_a_429_is_retried_after_its_retry_after(receiver):
    receiver.script = [Reply(429, {"Retry-After": "2"})]
    var = unique_var("busy")
    ref = manager.add_webhook(var, receiver.url)

    manager.notify_observers(var, 1, 2)

    wait_for(lambda: len(attempts_of(ref)) == 2)
    first, second = attempts_of(ref)
    assert first.status_code == 429 and second.status_code == 200
    # The schedule alone would have retried after 0.2 s.
    assert first.next_retry_at is not None
    assert (first.next_retry_at - first.created_at).total_seconds() == pytest.approx(2, abs=0.2)
    assert receiver.requests[1].at - receiver.requests[0].at >= 1.9


def test_a_408_and_a_slow_endpoint_are_retried(receiver):
    receiver.script = [Reply(408), Reply(200, delay_s=5)]  # the second outlasts OBSERVERS_WEBHOOK_TIMEOUT
    var = unique_var("slow")
    ref = manager.add_webhook(var, receiver.url)

    manager.notify_observers(var, 1, 2)

    wait_for(lambda: len(attempts_of(ref)) == 3, timeout=30)
    attempts = attempts_of(ref)
    assert [a.status_code for a in attempts] == [408, None, 200]
    assert attempts[1].error.startswith("timeout") and (attempts[1].latency_ms or 0) < 4000


def test_an_endpoint_failing_too_often_is_disabled_then_reenabled(receiver):
    receiver.default = Reply(503)
    var = unique_var("dead")
    ref = manager.add_webhook(var, receiver.url)

    # Two messages of up to 4 attempts each before parking: the 6th failure in a row disables it.
    manager.notify_observers(var, 1, 2)
    manager.notify_observers(var, 2, 3)

    observer = wait_for(lambda: Observer.objects.filter(id=ref, quarantined_at__isnull=False).first())
    assert "6 failed attempts in a row" in observer.last_error and "HTTP 503" in observer.last_error
    assert attempts_of(ref)[-1].next_retry_at is None  # disabled: no retry
    assert (manager.removal_of(ref) or {}).get("reason") == "quarantined"
    assert manager.observer_count(var) == 0
    time.sleep(QUIET_S)
    seen = len(receiver.requests)
    assert seen == 6
    manager.notify_observers(var, 3, 4)
    time.sleep(QUIET_S)
    assert len(receiver.requests) == seen

    receiver.default = Reply(200)
    assert manager.reenable_observer(ref)
    assert WebhookEndpoint.objects.get(observer_id=ref).failures == 0
    manager.notify_observers(var, 4, 5)
    wait_for(lambda: WebhookAttempt.objects.filter(endpoint_id=ref, status_code=200).exists())
    assert json.loads(receiver.requests[-1].body)["data"]["new"] == 5


def test_an_endpoint_failing_for_longer_than_the_limit_is_disabled_at_its_next_failure(receiver):
    receiver.default = Reply(502)
    var = unique_var("long")
    ref = manager.add_webhook(var, receiver.url)
    six_days_ago = timezone.now() - timedelta(days=6)  # OBSERVERS_WEBHOOK_DISABLE_AFTER: 5 days
    WebhookEndpoint.objects.filter(observer_id=ref).update(failures=1, failing_since=six_days_ago)

    manager.notify_observers(var, 1, 2)

    observer = wait_for(lambda: Observer.objects.filter(id=ref, quarantined_at__isnull=False).first())
    assert observer.last_error.startswith("failing for") and "HTTP 502" in observer.last_error
    assert len(receiver.requests) == 1
    assert attempts_of(ref)[-1].next_retry_at is None


def test_a_far_retry_waits_in_the_database_until_the_sweep_sends_it(receiver):
    var = unique_var("parked")
    ref = manager.add_webhook(var, receiver.url)
    endpoint = WebhookEndpoint.objects.get(observer_id=ref)
    payload = messages.body(messages.CHANGED, var, 1, 2, {"observer_ref": str(ref)})
    WebhookRetry.objects.create(
        endpoint=endpoint, message_id="msg_parked", body=payload, attempt=5, due_at=timezone.now()
    )
    WebhookRetry.objects.create(
        endpoint=endpoint,
        message_id="msg_later",
        body=payload,
        attempt=5,
        due_at=timezone.now() + timedelta(hours=1),
    )

    assert manager.sweep()["webhook_retries_sent"] == 1

    attempt = wait_for(lambda: WebhookAttempt.objects.filter(endpoint_id=ref).first())
    assert (attempt.message_id, attempt.attempt, attempt.status_code) == ("msg_parked", 5, 200)
    assert list(WebhookRetry.objects.filter(endpoint=endpoint).values_list("message_id", flat=True)) == [
        "msg_later"
    ]


def test_a_near_retry_the_broker_refuses_waits_in_the_database(receiver, settings):
    """A failed attempt's near retry is confirmed by the broker before the attempt's message is
    acknowledged; one the broker refuses (here its queue is declared with other arguments) is parked
    for the sweep, not lost."""
    ref = manager.add_webhook(unique_var("refused"), receiver.url)
    receiver.default = Reply(500)
    settings.OBSERVERS_QUEUE = unique_var("observers-test-near").replace(":", "-")
    queue = wiring.webhook_queue().name
    with app.connection_for_write() as connection:  # a queue the hub's own declaration clashes with
        channel: Any = connection.default_channel
        channel.queue_declare(queue, durable=True, arguments={"x-max-length": 1})
    try:
        result: dict[str, str] = {}
        # A thread of its own: a new broker link, on the new queue.
        thread = threading.Thread(
            target=lambda: result.update(outcome=attempts.deliver(str(ref), "msg_near", "{}", 1))
        )
        thread.start()
        thread.join(30)
        assert result == {"outcome": "retrying"}
        [retry] = WebhookRetry.objects.filter(endpoint_id=ref)
        assert (retry.message_id, retry.attempt) == ("msg_near", 2)
        assert retry.due_at <= timezone.now() + timedelta(seconds=1)  # the schedule's first delay
    finally:
        with app.connection_for_write() as connection:
            deleting: Any = connection.default_channel
            deleting.queue_delete(queue)


def test_attempts_kept_are_bounded(receiver):
    var = unique_var("bounded")
    ref = manager.add_webhook(var, receiver.url)
    for value in range(8):
        manager.notify_observers(var, value, value + 1)
    wait_for(lambda: len(receiver.requests) == 8)
    wait_for(lambda: WebhookEndpoint.objects.filter(observer_id=ref, last_success_at__isnull=False).exists())
    time.sleep(0.5)
    assert WebhookAttempt.objects.filter(endpoint_id=ref).count() == 5  # OBSERVERS_WEBHOOK_ATTEMPTS_KEPT


# The SSRF guard on the network path: 127.0.0.1 is allowed in tests/settings.py, 127.0.0.2 is not.


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.2",
        "[::ffff:127.0.0.2]",  # IPv4-mapped IPv6
        "receiver.test",  # a name resolving to 127.0.0.2 (OBSERVERS_WEBHOOK_RESOLVE)
        "2130706434",  # 127.0.0.2 written as one number, resolved by the system resolver
        "127.2",
    ],
)
def test_a_refused_address_is_refused_at_add_webhook(trap, host):
    port = trap.url.split(":")[-1].split("/")[0]
    with pytest.raises(WebhookRefused, match=r"127\.0\.0\.2\)? is loopback.*OBSERVERS_WEBHOOK_ALLOW"):
        manager.add_webhook(unique_var("ssrf"), f"http://{host}:{port}/hook")
    assert trap.requests == []


def test_a_redirect_to_a_refused_address_is_refused_at_delivery(receiver, trap):
    receiver.default = Reply(307, {"Location": trap.url})
    var = unique_var("redirect")
    ref = manager.add_webhook(var, receiver.url)

    manager.notify_observers(var, 1, 2)

    attempt = wait_for(lambda: WebhookAttempt.objects.filter(endpoint_id=ref).first())
    time.sleep(QUIET_S)
    assert "127.0.0.2" in attempt.error and "loopback" in attempt.error
    assert attempt.next_retry_at is None and len(receiver.requests) == 1
    assert trap.requests == []


def test_a_redirect_to_an_allowed_address_is_followed_with_the_signed_body(receiver):
    with running_receiver() as target:
        receiver.default = Reply(308, {"Location": target.url})
        var = unique_var("moved")
        ref = manager.add_webhook(var, receiver.url.replace("127.0.0.1", "allowed.test"))
        manager.notify_observers(var, 1, 2)
        wait_for(lambda: target.requests)
        Webhook(ref.secret).verify(target.requests[0].body, target.requests[0].headers)
        attempt = wait_for(lambda: WebhookAttempt.objects.filter(endpoint_id=ref).first())
        assert attempt.status_code == 200

"""Webhook endpoints in the admin: staff only, health and attempts shown, the secret never, actions."""

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from observers_app import manager
from observers_app.models import Observer, WebhookAttempt, WebhookEndpoint
from tests.conftest import wait_for
from tests.factories import unique_var
from tests.receivers import running_receiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]

CHANGELIST = "admin:observers_app_webhookendpoint_changelist"


@pytest.fixture
def staff_client() -> Client:
    user = User.objects.create_user("hooks-admin", password="pw", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    return client


def test_non_staff_and_staff_without_permission_are_refused():
    visitor = Client()
    visitor.force_login(User.objects.create_user("visitor", password="pw", is_staff=False))
    response = visitor.get(reverse(CHANGELIST))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    staff = Client()
    staff.force_login(User.objects.create_user("clerk", password="pw", is_staff=True))
    assert staff.get(reverse(CHANGELIST)).status_code == 403


def test_viewing_staff_see_endpoints_but_cannot_act():
    with running_receiver() as receiver:
        ref = manager.add_webhook(unique_var("view"), receiver.url)
        user = User.objects.create_user("viewer", password="pw", is_staff=True)
        user.user_permissions.add(Permission.objects.get(codename="view_webhookendpoint"))
        client = Client()
        client.force_login(user)
        page = client.get(reverse(CHANGELIST)).content.decode()
        assert receiver.url in page and "send_test_event" not in page
        response = client.post(
            reverse(CHANGELIST), {"action": "send_test_event", "_selected_action": [ref]}, follow=True
        )
        assert "Sent a test event" not in response.content.decode()


def test_endpoint_pages_show_status_and_attempts_but_never_the_secret(staff_client):
    with running_receiver() as receiver:
        var = unique_var("page")
        ref = manager.add_webhook(var, receiver.url)
        manager.notify_observers(var, 1, 2)
        wait_for(lambda: WebhookAttempt.objects.filter(endpoint_id=ref).exists())

        listing = staff_client.get(reverse(CHANGELIST)).content.decode()
        assert receiver.url in listing and var in listing and "active" in listing
        detail = staff_client.get(
            reverse("admin:observers_app_webhookendpoint_change", args=[ref])
        ).content.decode()
        assert "recent attempts" in detail.lower() and "200" in detail
        assert ref.secret not in listing and ref.secret not in detail
        assert ref.secret.removeprefix("whsec_") not in detail


def test_send_a_test_event_and_reenable_from_the_admin(staff_client):
    with running_receiver() as receiver:
        ref = manager.add_webhook(unique_var("actions"), receiver.url)
        staff_client.post(reverse(CHANGELIST), {"action": "send_test_event", "_selected_action": [ref]})
        wait_for(lambda: receiver.requests)
        assert b'"type":"webhook.test"' in receiver.requests[0].body

        Observer.objects.filter(id=ref).update(quarantined_at=timezone.now(), last_error="dead")
        WebhookEndpoint.objects.filter(observer_id=ref).update(failures=9, failing_since=timezone.now())
        assert "disabled: dead" in staff_client.get(reverse(CHANGELIST)).content.decode()
        staff_client.post(reverse(CHANGELIST), {"action": "reenable_endpoints", "_selected_action": [ref]})
        assert Observer.objects.get(id=ref).quarantined_at is None
        assert WebhookEndpoint.objects.get(observer_id=ref).failures == 0

        staff_client.post(reverse(CHANGELIST), {"action": "remove_endpoints", "_selected_action": [ref]})
        assert not Observer.objects.filter(id=ref).exists()

"""The history in the admin: the replay action and form on observers and webhook endpoints (staff with
the change permission only; re-enabling an endpoint offers it), the recent notifications on a
variable's inspect page (with the history's view permission only)."""

import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from observers_app import manager
from observers_app.models import Observer, WebhookEndpoint
from tests.conftest import wait_for
from tests.factories import unique_var
from tests.receivers import running_receiver
from tests.testapp.callbacks import record
from tests.testapp.models import Received

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]

OBSERVERS = "admin:observers_app_observer_changelist"
ENDPOINTS = "admin:observers_app_webhookendpoint_changelist"


def client_with(*codenames: str, superuser: bool = False) -> Client:
    name = "-".join(["staff", *codenames, "super" if superuser else ""])
    user = User.objects.create_user(name, is_staff=True, is_superuser=superuser)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def observed(prefix: str, notifications: int) -> tuple[str, object]:
    var = unique_var(prefix)
    ref = manager.add_observer(var, record)
    for n in range(notifications):
        manager.notify_observers(var, n, n + 1, {"n": n})
    wait_for(lambda: Received.objects.filter(observer_ref=str(ref)).count() == notifications)
    return var, ref


def test_the_replay_action_leads_to_the_form_which_replays_from_a_seq():
    var, ref = observed("adm", 3)
    client = client_with(superuser=True)
    response = client.post(reverse(OBSERVERS), {"action": "replay_history", "_selected_action": [str(ref)]})
    form_url = reverse("admin:observers_app_observer_replay", args=[ref])
    assert response.status_code == 302 and response["Location"] == form_url
    page = client.get(form_url).content.decode()
    assert 'name="since_seq"' in page and var in page

    done = client.post(form_url, {"since_seq": "2"}, follow=True).content.decode()

    assert "Queued 2 notifications of 1 variables." in done
    rows = wait_for(lambda: Received.objects.filter(observer_ref=str(ref)).count() == 5)
    assert rows
    replayed = Received.objects.filter(observer_ref=str(ref)).order_by("id")[3:]
    # Numbered by the workers as they dispatched them: seq 2 and 3, whichever values those were.
    assert [row.new_value for row in replayed] == [e.new_value for e in manager.history(var).entries[1:]]


def test_bad_points_are_shown_on_the_form_and_a_glob_has_no_seq_field():
    var, ref = observed("adm-bad", 1)
    client = client_with(superuser=True)
    form_url = reverse("admin:observers_app_observer_replay", args=[ref])
    future = (timezone.localtime() + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    page = client.post(form_url, {"since_time": future}).content.decode()
    assert "is in the future" in page
    assert "Give a time or a seq" in client.post(form_url, {}).content.decode()
    assert "the last seq of" in client.post(form_url, {"since_seq": "9"}).content.decode()
    glob = manager.add_observer(f"{var}*", record, glob=True)
    page = client.get(reverse("admin:observers_app_observer_replay", args=[glob])).content.decode()
    assert 'name="since_time"' in page and 'name="since_seq"' not in page
    missing = reverse("admin:observers_app_observer_replay", args=["00000000-0000-0000-0000-000000000000"])
    assert client.get(missing).status_code == 404


def test_staff_without_the_change_permission_cannot_replay():
    _, ref = observed("adm-perm", 1)
    form_url = reverse("admin:observers_app_observer_replay", args=[ref])
    viewer = client_with("view_observer")
    assert viewer.get(form_url).status_code == 403
    assert viewer.post(form_url, {"since_seq": "1"}).status_code == 403
    assert "replay_history" not in viewer.get(reverse(OBSERVERS)).content.decode()
    viewer.post(reverse(OBSERVERS), {"action": "replay_history", "_selected_action": [str(ref)]})
    visitor = Client()
    visitor.force_login(User.objects.create_user("visitor", is_staff=False))
    response = visitor.get(form_url)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    endpoint_viewer = client_with("view_webhookendpoint")
    hook = manager.add_webhook(unique_var("hook-perm"), "http://127.0.0.1:9/never")
    assert (
        endpoint_viewer.get(reverse("admin:observers_app_webhookendpoint_replay", args=[hook])).status_code
        == 403
    )
    assert Received.objects.filter(observer_ref=str(ref)).count() == 1  # nothing was replayed


def test_an_endpoints_replay_page_replays_only_to_endpoints():
    """A user who may change endpoints only cannot reach a callback observer through their page."""
    _, ref = observed("adm-own-model", 1)
    endpoint_editor = client_with("change_webhookendpoint", "view_webhookendpoint")
    form_url = reverse("admin:observers_app_webhookendpoint_replay", args=[ref])
    assert endpoint_editor.get(form_url).status_code == 404
    assert endpoint_editor.post(form_url, {"since_seq": "1"}).status_code == 404
    assert Received.objects.filter(observer_ref=str(ref)).count() == 1  # nothing was replayed


def test_reenabling_an_endpoint_offers_its_replay_prefilled_from_when_it_missed():
    with running_receiver() as receiver:
        var = unique_var("adm-hook")
        ref = manager.add_webhook(var, receiver.url)
        manager.notify_observers(var, 0, 1)
        wait_for(lambda: len(receiver.requests) == 1)
        last_success = wait_for(lambda: WebhookEndpoint.objects.get(observer_id=ref).last_success_at)
        disabled_at = timezone.now()
        Observer.objects.filter(id=ref).update(quarantined_at=disabled_at, last_error="down")
        manager.notify_observers(var, 1, 2)  # missed: the endpoint is disabled
        wait_for(lambda: len(manager.history(var).entries) == 2)
        client = client_with("view_webhookendpoint", "change_webhookendpoint")

        response = client.post(
            reverse(ENDPOINTS), {"action": "reenable_endpoints", "_selected_action": [str(ref)]}
        )

        assert Observer.objects.get(id=ref).quarantined_at is None
        form_url = reverse("admin:observers_app_webhookendpoint_replay", args=[ref])
        assert response.status_code == 302 and response["Location"].startswith(form_url + "?since=")
        page = client.get(response["Location"]).content.decode()
        # From its last success on (the notification that failed first was notified before it failed).
        shown = timezone.localtime(last_success).strftime("%Y-%m-%d %H:%M:%S")
        assert re.search(rf'name="since_time" value="{re.escape(shown)}', page), page
        done = client.post(form_url, {"since_time": shown}, follow=True).content.decode()
        # The form shows whole seconds: the one delivered in that second may come again (its same id).
        assert re.search(r"Queued [12] notifications", done)
        missed = manager.history(var).entries[-1].notification_id
        wait_for(
            lambda: (
                missed
                in {json.loads(r.body)["data"]["metadata"]["notification_id"] for r in receiver.requests}
            )
        )


def test_the_inspect_page_shows_recent_notifications_to_those_who_may_view_the_history():
    var, _ = observed("adm-insp", 2)
    manager.notify_observers(var, "<b>old</b>", {"k": "<script>"}, {"source": "admin-test"})
    wait_for(lambda: len(manager.history(var).entries) == 3)
    url = reverse("admin:observers_inspect", kwargs={"var_id": var})
    page = client_with("view_observer", "view_historyentry").get(url).content.decode()
    assert "Recent notifications" in page
    table = page.split('id="inspect-history"')[1]
    assert re.findall(r"<tr>\s*<td>(\d+)</td>", table) == ["3", "2", "1"]  # newest first
    assert "&quot;admin-test&quot;" in table and "&lt;script&gt;" in table and "<script>" not in table
    entry = manager.history(var).entries[-1]
    assert entry.notification_id in table and f"<td>{entry.observers}</td>" in table
    without = client_with("view_observer").get(url).content.decode()
    assert "Recent notifications" not in without and "admin-test" not in without

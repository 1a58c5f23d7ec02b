"""The admin: staff see observers, owners, variables, the stats dashboard and inspect pages; others don't."""

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from observers_app import admin as hub_admin
from observers_app import manager
from observers_app.models import Observer
from tests.factories import make_observers, unique_var
from tests.testapp.callbacks import explode, record

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff_client() -> Client:
    user = User.objects.create_user("operator", password="pw", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    return client


def test_non_staff_are_refused_every_hub_page():
    user = User.objects.create_user("visitor", password="pw", is_staff=False)
    client = Client()
    client.force_login(user)
    for url in (
        reverse("admin:observers_app_observer_changelist"),
        reverse("admin:observers_stats"),
        reverse("admin:observers_inspect", kwargs={"var_id": "x"}),
        reverse("admin:observers_app_variablestate_changelist"),
    ):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url


def test_observer_list_shows_variables_filters_and_search(staff_client):
    var = unique_var("adm")
    manager.add_observer(var, record)
    with manager.open_owner("ws-client", ttl_s=60) as lease:
        manager.add_observer(var, explode, owner=lease)
        page = staff_client.get(
            reverse("admin:observers_app_observer_changelist"), {"q": var}
        ).content.decode()
        assert page.count(var) >= 2 and "ws-client" in page and "durable" in page
        alive_only = staff_client.get(reverse("admin:observers_app_observer_changelist"), {"alive": "no"})
        assert var not in alive_only.content.decode()
    prefix = staff_client.get(reverse("admin:observers_app_observer_changelist"), {"q": var[:6] + "*"})
    assert var in prefix.content.decode()
    assert "Stats dashboard" in prefix.content.decode()


def test_actions_remove_reenable_and_send_a_test_notification(staff_client):
    var = unique_var("act")
    keep, drop = make_observers(var, 2)
    Observer.objects.filter(id=keep).update(quarantined_at="2026-01-01T00:00:00Z", failures=5)
    url = reverse("admin:observers_app_observer_changelist")
    staff_client.post(url, {"action": "reenable_observers", "_selected_action": [str(keep)]})
    assert Observer.objects.get(id=keep).quarantined_at is None
    staff_client.post(url, {"action": "remove_observers", "_selected_action": [str(drop)]})
    assert not Observer.objects.filter(id=drop).exists()
    assert manager.removal_of(drop)["reason"] == "removed"  # type: ignore[index]
    response = staff_client.post(
        url, {"action": "send_test_notification", "_selected_action": [str(keep)]}, follow=True
    )
    assert "Sent a test notification to 1 variables" in response.content.decode()
    assert "delete_selected" not in staff_client.get(url).content.decode()


def test_inspect_page_and_variables_overview(staff_client):
    var = unique_var("insp")
    refs = make_observers(var, 3)
    manager.add_observer(var, record)
    page = staff_client.get(reverse("admin:observers_inspect", kwargs={"var_id": var})).content.decode()
    assert all(str(ref) in page for ref in refs)
    overview = staff_client.get(reverse("admin:observers_app_variablestate_changelist")).content.decode()
    assert var in overview and reverse("admin:observers_inspect", kwargs={"var_id": var}) in overview


def test_stats_dashboard_shows_every_figure_and_the_chart(staff_client):
    manager.add_observer(unique_var(), record)
    page = staff_client.get(reverse("admin:observers_stats")).content.decode()
    for name in manager.get_stats():
        assert f'data-stat="{name}"' in page
    assert (
        "<svg" in page and "<polyline" in page and "http" not in page.split("<svg", 1)[1].split("</svg>")[0]
    )


def test_list_counts_are_capped_not_full_counts(monkeypatch):
    monkeypatch.setattr(hub_admin, "COUNT_CAP", 10)
    make_observers(unique_var("cap"), 25)
    paginator = hub_admin.CappedCountPaginator(Observer.objects.filter(failures=0).order_by("id"), 5)
    assert paginator.count == 11

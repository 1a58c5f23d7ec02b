"""The admin: staff see observers, owners, variables, the stats dashboard and inspect pages; others don't."""

import re

import django
import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from observers_app import admin as hub_admin
from observers_app import manager
from observers_app.models import Observer
from observers_app.registry import name_of
from observers_app.telemetry import counters
from tests.factories import hub_admin_pages, make_observers, unique_var
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


def test_no_hub_page_has_an_inline_script_or_style(staff_client):
    """What a Content Security Policy without 'unsafe-inline' (Django 6's SECURE_CSP) would block: the
    hub's pages, Django's admin around them included, run under one as they are."""
    for url in hub_admin_pages()[1]:
        page = staff_client.get(url).content.decode()
        assert "<style" not in page and not re.search(r"\sstyle=", page), url
        assert not re.search(r"\son[a-z]+=", page), url  # no inline event handler either
        for script in re.findall(r"<script\b[^>]*>", page):
            assert " src=" in script, (url, script)
    stats = staff_client.get(reverse("admin:observers_stats")).content.decode()
    assert "observers_app/stats.js" in stats and "observers_app/stats.css" in stats
    assert "nonce=" not in stats  # the example project enables no nonce


@pytest.mark.skipif(django.VERSION < (6, 0), reason="CSP nonces came in Django 6.0 (Django 5.2 has none)")
def test_the_stats_page_carries_the_nonce_where_the_host_enables_it(staff_client, settings):
    from django.utils.csp import CSP

    settings.SECURE_CSP = {"default-src": [CSP.SELF], "script-src": [CSP.NONCE], "style-src": [CSP.NONCE]}
    engine = settings.TEMPLATES[0]
    processors = [*engine["OPTIONS"]["context_processors"], "django.template.context_processors.csp"]
    settings.TEMPLATES = [{**engine, "OPTIONS": {**engine["OPTIONS"], "context_processors": processors}}]
    response = staff_client.get(reverse("admin:observers_stats"))
    nonce = re.findall(r"'nonce-([^']+)'", response["Content-Security-Policy"])
    assert len(set(nonce)) == 1
    page = response.content.decode()
    assert re.search(rf'observers_app/stats\.js"[^>]*\snonce="{re.escape(nonce[0])}"', page)
    assert re.search(rf'observers_app/stats\.css"[^>]*\snonce="{re.escape(nonce[0])}"', page)


def test_list_counts_are_capped_not_full_counts(monkeypatch):
    monkeypatch.setattr(hub_admin, "COUNT_CAP", 10)
    make_observers(unique_var("cap"), 25)
    paginator = hub_admin.CappedCountPaginator(Observer.objects.filter(failures=0).order_by("id"), 5)
    assert paginator.count == 11


def hostile_rows() -> list[str]:
    """Rows with names stored before names were checked (or by a direct insert): a newline, a tab."""
    names = [
        f"{unique_var('hostile')}\nline",
        f"{unique_var('hostile')}\ttab",
        f"{unique_var('long')}-" + "x" * 230,
    ]
    for var in names:
        Observer.objects.create(var_id=var, callback=name_of(record))
        counters.adjust_observer_counts({var: 1})
    Observer.objects.create(var_id="hostile:glob\n*", is_glob=True, callback=name_of(record))
    return names


def test_admin_pages_stay_200_with_hostile_names_present_and_after_their_observers_go(staff_client):
    names = hostile_rows()
    changelist = reverse("admin:observers_app_observer_changelist")
    pages = [
        reverse("admin:observers_app_observer_changelist"),
        reverse("admin:observers_app_variablestate_changelist"),
        reverse("admin:observers_stats"),
        reverse("admin:observers_inspect", kwargs={"var_id": "hostile:globbed"}),
    ]
    for url in pages:
        assert staff_client.get(url).status_code == 200, url
    overview = staff_client.get(pages[1]).content.decode()
    assert "hostile" in overview
    for observer in Observer.objects.filter(var_id__in=names):
        assert (
            staff_client.get(reverse("admin:observers_app_observer_change", args=[observer.pk])).status_code
            == 200
        )
    refs = [str(ref) for ref in Observer.objects.filter(var_id__in=names).values_list("id", flat=True)]
    response = staff_client.post(changelist, {"action": "remove_observers", "_selected_action": refs})
    assert response.status_code == 302
    assert not Observer.objects.filter(var_id__in=names).exists()
    for url in pages:
        assert staff_client.get(url).status_code == 200, url


@pytest.mark.parametrize("var_id", ["x" * 300, "%00", "a%00b", "a%0Ab"])
def test_inspect_of_a_name_no_variable_can_have_is_404(staff_client, var_id):
    url = reverse("admin:observers_inspect", kwargs={"var_id": "PLACEHOLDER"}).replace("PLACEHOLDER", var_id)
    assert staff_client.get(url).status_code == 404


@pytest.mark.parametrize("term", ["a\x00b", "line\nbreak", "x" * 300])
def test_a_search_for_a_name_no_variable_can_have_finds_nothing(staff_client, term):
    for url in (
        reverse("admin:observers_app_observer_changelist"),
        reverse("admin:observers_app_variablestate_changelist"),
    ):
        assert staff_client.get(url, {"q": term}).status_code == 200


def test_removing_observers_through_the_admin_needs_the_delete_permission():
    var = unique_var("perm")
    keep, drop = make_observers(var, 2)
    user = User.objects.create_user("changer", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_observer", "change_observer"]))
    client = Client()
    client.force_login(user)
    url = reverse("admin:observers_app_observer_changelist")
    assert "remove_observers" not in client.get(url).content.decode()
    client.post(url, {"action": "remove_observers", "_selected_action": [str(drop)]})
    assert Observer.objects.filter(id__in=[keep, drop]).count() == 2

    user.user_permissions.add(Permission.objects.get(codename="delete_observer"))
    client.force_login(User.objects.get(pk=user.pk))  # permissions are cached per user object
    assert "remove_observers" in client.get(url).content.decode()
    client.post(url, {"action": "remove_observers", "_selected_action": [str(drop)]})
    assert list(Observer.objects.filter(id__in=[keep, drop]).values_list("id", flat=True)) == [keep]

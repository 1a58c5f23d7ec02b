"""End to end in headless Chromium: an operator logs into the production-styled admin and reads the hub.

Gunicorn serves the project with DEBUG off and WhiteNoise serving what collectstatic gathered, so the
screenshots (saved under ``screenshots/test_browser/``) show what an operator sees.
"""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, sync_playwright

from observers_app import manager
from tests.conftest import database_url, free_port, wait_for
from tests.factories import unique_var
from tests.testapp.callbacks import explode, record
from tests.testapp.models import Received

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]

SCREENSHOTS = Path(__file__).resolve().parent.parent / "screenshots" / "test_browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """The project under gunicorn, DEBUG off, static files collected and served by WhiteNoise."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DEBUG": "false",
        "STATIC_ROOT": str(tmp_path / "static"),
        "SECRET_KEY": "browser-test-key",
    }
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], env=env, check=True, timeout=120
    )
    gunicorn = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "project.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        import urllib.request

        from tests.telemetry.test_telemetry import get_json  # noqa: F401 - reuse the opener's timeout semantics

        def up() -> bool:
            try:
                return urllib.request.urlopen(f"{base}/admin/login/", timeout=2).status == 200
            except OSError:
                return False

        wait_for(up, timeout=30)
        yield base
    finally:
        gunicorn.terminate()
        gunicorn.wait(timeout=20)


def log_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", "a-long-test-password")
    page.click("input[type=submit]")


def test_an_operator_reads_observers_inspect_and_stats_pages(server: str):
    User.objects.create_user("operator", password="a-long-test-password", is_staff=True, is_superuser=True)
    User.objects.create_user("visitor", password="a-long-test-password", is_staff=False)
    var = unique_var("price")
    refs = [manager.add_observer(var, record) for _ in range(3)]
    failing = manager.add_observer(var, explode)
    for n in range(2):  # the failing observer stays below the quarantine threshold (3 in tests)
        manager.notify_observers(var, n, n + 1)
    wait_for(lambda: Received.objects.filter(var_id=var).count() == 6)
    wait_for(lambda: manager.get_stats()["notifications_failed"] >= 2)
    stats = manager.get_stats()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})

        log_in(page, server, "visitor")
        assert "staff account" in page.content()
        page.goto(f"{server}/admin/observers_app/observer/stats/")
        assert "/admin/login/" in page.url
        page.screenshot(path=str(SCREENSHOTS / "0-visitor-refused.png"))

        log_in(page, server, "operator")
        page.goto(f"{server}/admin/observers_app/observer/?q={var}")
        rows = page.locator("#result_list tbody tr")
        assert rows.count() == 4
        assert page.locator("#result_list").inner_text().count(var) == 4
        # Styled as in production: the admin's stylesheet came from WhiteNoise.
        assert (
            page.evaluate("getComputedStyle(document.querySelector('#header')).backgroundColor")
            != "rgba(0, 0, 0, 0)"
        )
        page.screenshot(path=str(SCREENSHOTS / "1-observers-list.png"), full_page=True)

        page.click(f"#result_list a:text('{var}')")
        assert "/inspect/" in page.url
        assert "4</strong> observers called" in page.content()
        table = page.locator("#inspect-observers").inner_text()
        assert all(str(ref) in table for ref in refs) and str(failing) in table
        page.screenshot(path=str(SCREENSHOTS / "2-inspect.png"), full_page=True)

        page.goto(f"{server}/admin/observers_app/observer/")
        page.click("text=Stats dashboard")
        shown = {
            cell.get_attribute("data-stat"): int(cell.inner_text())
            for cell in page.locator("#observers-stats td.stat-value").all()
        }
        assert shown["notifications_sent"] == stats["notifications_sent"]
        assert shown["notifications_failed"] == stats["notifications_failed"]
        assert shown["active_observers"] == 4
        assert page.locator("#observers-chart polyline").count() == 3
        totals = {
            el.get_attribute("data-series"): int(el.inner_text())
            for el in page.locator(".series-total").all()
        }
        assert totals["callbacks"] >= 8 and totals["failures"] >= 2 and totals["notifications"] >= 2
        page.screenshot(path=str(SCREENSHOTS / "3-stats.png"), full_page=True)
        browser.close()

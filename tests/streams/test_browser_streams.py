"""Streams in headless Chromium: EventSource, and the stats dashboard updating live (under an enforced
Content Security Policy on Django 6.0+, with every hub admin page).

The project runs under uvicorn with DEBUG off; screenshots go to ``screenshots/test_browser_streams/``.
"""

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import django
import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from playwright.sync_api import ConsoleMessage, Page, sync_playwright

from observers_app import manager
from observers_app.sources import sessions
from observers_app.streams.access import issue_token
from tests.asgi_server import running_asgi_server
from tests.conftest import database_url, wait_for
from tests.factories import hub_admin_pages, unique_var
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, log_in
from tests.testapp.callbacks import record

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]

SCREENSHOTS = Path(__file__).resolve().parent.parent / "screenshots" / "test_browser_streams"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    env = {"DEBUG": "false", "STATIC_ROOT": str(tmp_path / "static"), "OBSERVERS_STREAM_RESUME_WINDOW": "0"}
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        env={**_environment(), **env},
        check=True,
        timeout=120,
    )
    with running_asgi_server(**env) as (base, _):
        yield base


def _environment() -> dict[str, str]:
    import os

    return {**os.environ, "DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "tests.settings"}


def shown_figures(page: Page) -> dict[str, int]:
    return {
        str(cell.get_attribute("data-stat")): int(cell.inner_text())
        for cell in page.locator("#observers-stats td.stat-value").all()
    }


def test_eventsource_receives_changes_and_the_dashboard_goes_live(
    server: str, monkeypatch: pytest.MonkeyPatch
):
    # Playwright's sync API runs an event loop in this thread: the test's own ORM calls are still sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    User.objects.create_user("operator", password="a-long-test-password", is_staff=True, is_superuser=True)
    session_id = unique_var("browser").split(":")[1]
    var = sessions.variable_id(session_id, "x")
    sessions.set_variable(session_id, "x", "initial")  # the stream's snapshot says it is live
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        log_in(page, server, "operator")

        # The browser's own EventSource, same origin, authenticated by the session cookie.
        page.evaluate(
            """(url) => {
                window.received = [];
                window.source = new EventSource(url);
                window.source.addEventListener(url.split("var=")[1], (e) => window.received.push(
                    {id: e.lastEventId, data: JSON.parse(e.data)}));
                window.source.onopen = () => { window.opened = true; };
            }""",
            f"/observers/stream?var={var}",
        )
        wait_for(lambda: page.evaluate("window.opened === true"))
        # The snapshot first: after it, every change is a change event.
        wait_for(lambda: page.evaluate("window.received.length") == 1, timeout=30)
        for n in range(3):
            sessions.set_variable(session_id, "x", f"value {n}")
        wait_for(lambda: page.evaluate("window.received.length") == 4, timeout=60)
        received = page.evaluate("window.received")
        assert [event["data"]["new_value"] for event in received] == [
            "initial",
            "value 0",
            "value 1",
            "value 2",
        ]
        seqs = [int(event["id"].split(":")[1]) for event in received]  # <epoch>:<seq>
        assert seqs == sorted(seqs)
        page.evaluate("window.source.close()")
        wait_for(lambda: manager.observer_count(var) == 0, timeout=5)

        page.goto(f"{server}/admin/observers_app/observer/stats/")
        wait_for(lambda: page.locator("#observers-live").inner_text().startswith("Live"))
        assert "Removed by remove_observer" in page.content(), "labels, not raw keys"
        assert "removed_removed</td>" not in page.content()
        before = shown_figures(page)
        page.screenshot(path=str(SCREENSHOTS / "0-dashboard-before.png"), full_page=True)

        loop_var = unique_var("loop")
        manager.add_observer(loop_var, record)
        stop = threading.Event()

        def notify_loop() -> None:
            n = 0
            while not stop.wait(0.05):
                manager.notify_observers(loop_var, n, n + 1)
                n += 1

        notifier = threading.Thread(target=notify_loop)
        notifier.start()
        try:
            wait_for(lambda: shown_figures(page)["notifications_sent"] >= before["notifications_sent"] + 20)
            wait_for(lambda: page.locator(".series-total[data-series=callbacks]").inner_text() != "0")
        finally:
            stop.set()
            notifier.join()
        after = shown_figures(page)
        assert after["notifications_dispatched"] > before["notifications_dispatched"]
        assert after["active_observers"] == before["active_observers"] + 1
        page.screenshot(path=str(SCREENSHOTS / "1-dashboard-after.png"), full_page=True)
        browser.close()


# Every CSP violation a page reports, passed to the test through a binding (page scripts cannot block it).
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => window.reportCspViolation(
    `${location.pathname}: ${event.effectiveDirective} blocked ${event.blockedURI} (line ${event.lineNumber})`
));
"""


@pytest.mark.skipif(
    django.VERSION < (6, 0),
    reason="Django 5.2 has no Content Security Policy support (SECURE_CSP and its middleware came in 6.0)",
)
def test_every_hub_admin_page_and_the_live_dashboard_work_under_an_enforced_csp(
    server: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop runs in this thread
    User.objects.create_user("operator", password="a-long-test-password", is_staff=True, is_superuser=True)
    var, pages = hub_admin_pages()
    violations: list[str] = []
    console: list[str] = []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        # A lambda: Playwright cannot expose a builtin method such as list.append.
        page.expose_function("reportCspViolation", lambda violation: violations.append(violation))
        page.add_init_script(REPORT_VIOLATIONS)

        def on_console(message: ConsoleMessage) -> None:
            if message.location.get("url", "").endswith("/favicon.ico"):
                return  # the example project has no favicon; Chromium asks for one anyway
            if message.type == "error" or "Content Security Policy" in message.text:
                console.append(f"{page.url}: {message.text}")

        page.on("console", on_console)
        log_in(page, server, "operator")

        def visit(path: str) -> None:
            response = page.goto(f"{server}{path}")
            assert response is not None and response.status == 200, path
            # The policy is enforced, so a page with an inline script or style could not pass unnoticed.
            assert response.headers.get("content-security-policy") == "default-src 'self'", path
            page.wait_for_load_state("load")

        for path in pages:
            visit(path)
        visit(reverse("admin:observers_stats"))  # again, to watch it live
        wait_for(lambda: violations or page.locator("#observers-live").inner_text().startswith("Live"))
        assert violations == [], violations
        # Styled by the hub's stylesheet: the series' colours and the chart's frame.
        stroke = "getComputedStyle(document.querySelector('#observers-chart polyline')).stroke"
        assert page.evaluate(stroke) == "rgb(65, 118, 144)"
        frame = "getComputedStyle(document.querySelector('#observers-chart')).borderTopStyle"
        assert page.evaluate(frame) == "solid"
        before = shown_figures(page)
        for n in range(5):
            manager.notify_observers(var, n, n + 1)
        # Live: the figures and the chart change on the open page, from the stream.
        wait_for(lambda: shown_figures(page)["notifications_sent"] >= before["notifications_sent"] + 10)
        wait_for(lambda: int(page.locator(".series-total[data-series=callbacks]").inner_text()) >= 10)
        assert shown_figures(page)["notifications_dispatched"] >= before["notifications_dispatched"] + 5
        page.screenshot(path=str(SCREENSHOTS / "2-dashboard-under-csp.png"), full_page=True)
        browser.close()

    assert violations == [], violations
    assert console == [], console  # no violation (Chromium logs each) and no script error


@contextmanager
def page_server(html: str) -> Iterator[int]:
    """Serves ``html`` at / on a free loopback port: a page of another origin than the hub's."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_page_of_an_allowed_other_origin_reads_a_token_stream(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop runs in this thread
    var = unique_var("cors")
    with page_server("<!doctype html><title>another origin</title><p>app</p>") as page_port:
        allowed = f"http://127.0.0.1:{page_port}"
        with running_asgi_server(OBSERVERS_STREAM_ALLOWED_ORIGINS=allowed) as (base, _):
            url = f"{base}/observers/stream?var={var}&token={issue_token([var])}"
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                listening = browser.new_page()
                listening.goto(f"{allowed}/")
                refused = browser.new_page()
                refused.goto(f"http://localhost:{page_port}/")  # same server, an origin not listed
                for page in (listening, refused):
                    page.evaluate(
                        """(url) => {
                            window.received = [];
                            window.failed = false;
                            window.source = new EventSource(url);
                            window.source.onmessage = () => {};
                            window.source.addEventListener(new URL(url).searchParams.get("var"),
                                (e) => window.received.push(JSON.parse(e.data).new_value));
                            window.source.onopen = () => { window.opened = true; };
                            window.source.onerror = () => { window.failed = true; window.source.close(); };
                        }""",
                        url,
                    )
                wait_for(lambda: listening.evaluate("window.opened === true"))
                # Refused by the browser (EventSource closes itself on a CORS failure).
                wait_for(lambda: refused.evaluate("window.failed || window.source.readyState === 2"))
                wait_for(lambda: manager.observer_count(var) == 1)
                for n in range(3):
                    manager.notify_observers(var, n, n + 1)
                wait_for(lambda: listening.evaluate("window.received.length") >= 3, timeout=30)
                time.sleep(0.5)  # a second copy of any would arrive meanwhile
                # Numbered by the workers in the order they dispatch: the values in any order, once.
                assert sorted(listening.evaluate("window.received")) == [1, 2, 3]
                assert refused.evaluate("window.opened === true") is False
                assert refused.evaluate("window.received") == []
                browser.close()

"""Secure by default: the compose stack holds no credential and publishes nothing beyond loopback, the
image runs unprivileged, Flower asks for a password, /metrics for a token, and the production settings
pass ``manage.py check --deploy``."""

import base64
import os
import re
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import running_flower, wait_for

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_check_deploy_is_clean_for_the_example_project_in_production_mode(tmp_path: Path):
    env = {key: value for key, value in os.environ.items() if key not in ("HTTPS", "DJANGO_SETTINGS_MODULE")}
    env.update(DEBUG="false", SECRET_KEY=secrets.token_urlsafe(50), DJANGO_SETTINGS_MODULE="project.settings")
    # Django 6.1's check asks every database (its version): one that exists, of the project's own.
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'check.sqlite3'}"
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_compose_stack_writes_no_credential_and_publishes_nothing_beyond_loopback():
    text = (ROOT / "docker-compose.yml").read_text()
    assert "guest" not in text
    services = compose()["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert re.match(r"(127\.0\.0\.1|\$\{WEB_BIND:-127\.0\.0\.1\}):", str(port)), (name, port)
    assert "ports" not in services["postgres"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    rabbitmq = services["rabbitmq"]["environment"]
    assert rabbitmq["RABBITMQ_DEFAULT_PASS"].startswith("${RABBITMQ_PASSWORD:?")
    assert rabbitmq["RABBITMQ_DEFAULT_VHOST"] == "observers"
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    for secret in ("SECRET_KEY", "POSTGRES_PASSWORD", "RABBITMQ_PASSWORD"):
        assert re.findall(rf"\$\{{{secret}(:[?-][^}}]*)?\}}", text), secret
    assert ".env" in (ROOT / ".dockerignore").read_text().split()
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_the_compose_stack_serves_the_whole_site_over_asgi():
    """One web service: the site under uvicorn, so its streams and the live stats dashboard work
    (tests/streams/test_browser_streams.py runs the same application the same way)."""
    services = compose()["services"]
    web = services["web"]["command"]
    assert "collectstatic --noinput" in web and "uvicorn project.asgi:application" in web
    commands = [str(service.get("command", "")) for service in services.values()]
    assert not [command for command in commands if "gunicorn" in command or "wsgi" in command]
    assert [command for command in commands if "uvicorn" in command] == [web]


def test_the_image_runs_as_an_unprivileged_user():
    users = re.findall(r"^USER\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert users and users[-1] not in ("root", "0")


def status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers or {}), timeout=5
        ) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.django_db(transaction=True)
def test_flower_with_basic_auth_refuses_a_client_without_the_password():
    with running_flower(FLOWER_BASIC_AUTH="operator:s3cret") as base:

        def up() -> int:
            try:
                return status(f"{base}/")
            except OSError:
                return 0

        assert wait_for(up, timeout=30) == 401
        assert status(f"{base}/tasks") == 401
        credentials = base64.b64encode(b"operator:s3cret").decode()
        assert status(f"{base}/", {"Authorization": f"Basic {credentials}"}) == 200


@pytest.mark.django_db(transaction=True)
def test_metrics_answer_an_allowed_address_or_the_token_and_no_one_else(live_server, settings):
    url = f"{live_server.url}/observers/metrics"
    assert status(url) == 200  # the live server's client is on loopback, allowed by default
    settings.OBSERVERS_METRICS_ALLOWED_IPS = []
    settings.OBSERVERS_METRICS_TOKEN = "scrape-token"
    assert status(url) == 403
    assert status(url, {"Authorization": "Bearer wrong"}) == 403
    assert status(url, {"Authorization": "Bearer scrape-token"}) == 200
    settings.OBSERVERS_METRICS_TOKEN = ""
    assert status(url, {"Authorization": "Bearer "}) == 403

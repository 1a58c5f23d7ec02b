"""The example project's settings: no silent per-process secret key in production mode; a Content
Security Policy wherever Django has one."""

import json
import os
import subprocess
import sys
from pathlib import Path

import django

REPO = Path(__file__).resolve().parent.parent


def load_settings(code: str = "print(len(s.SECRET_KEY))", **env: str) -> subprocess.CompletedProcess[str]:
    unset = ("SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE")
    clean = {k: v for k, v in os.environ.items() if k not in unset}
    return subprocess.run(
        [sys.executable, "-c", f"import project.settings as s; {code}"],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_mode_without_a_secret_key_refuses_to_start():
    result = load_settings()
    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is not set" in result.stderr


def test_a_secret_key_from_the_environment_or_debug_mode_starts():
    assert load_settings(SECRET_KEY="k" * 50).stdout.strip() == "50"
    assert load_settings(DEBUG="true").returncode == 0


def test_django_6_enforces_a_content_security_policy_and_django_5_2_runs_the_same_settings():
    code = (
        "import json; print(json.dumps(["
        "'django.middleware.csp.ContentSecurityPolicyMiddleware' in s.MIDDLEWARE,"
        "getattr(s, 'SECURE_CSP', None)]))"
    )
    result = load_settings(code, SECRET_KEY="k" * 50)
    assert result.returncode == 0, result.stderr
    if django.VERSION >= (6, 0):
        assert json.loads(result.stdout) == [True, {"default-src": ["'self'"]}]
    else:
        assert json.loads(result.stdout) == [False, None]

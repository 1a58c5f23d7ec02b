"""The example project's settings: no silent per-process secret key in production mode."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def load_settings(**env: str) -> subprocess.CompletedProcess[str]:
    unset = ("SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE")
    clean = {k: v for k, v in os.environ.items() if k not in unset}
    return subprocess.run(
        [sys.executable, "-c", "import project.settings as s; print(len(s.SECRET_KEY))"],
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

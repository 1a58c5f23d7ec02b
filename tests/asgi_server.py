"""The example project under a real ASGI server (uvicorn), as the stream tests and the browser test run it."""

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from django.conf import settings

from tests.conftest import database_url, free_port, wait_for


@contextmanager
def running_asgi_server(
    *, log_to: str | os.PathLike[str] | None = None, **env: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Serve ``project.asgi:application`` on a free loopback port; yields its base URL and process.
    It signs with the test process's SECRET_KEY, so tokens issued in a test are valid there.
    ``log_to``: a file that gets the server's output (its logs), for the test to read."""
    port = free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "SECRET_KEY": settings.SECRET_KEY,
        **env,
    }
    command = [sys.executable, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--no-access-log", "--lifespan", "off"]
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return urllib.request.urlopen(f"{base}/admin/login/", timeout=2).status == 200
        except OSError:
            return False

    with ExitStack() as stack:
        output = stack.enter_context(Path(log_to).open("wb")) if log_to is not None else None
        process = subprocess.Popen(
            command, env=environment, stdout=output, stderr=None if output is None else subprocess.STDOUT
        )
        try:
            wait_for(up, timeout=30)
            yield base, process
        finally:
            process.terminate()
            process.wait(timeout=20)

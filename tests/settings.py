"""Test settings: the project's, plus a test app whose callbacks record what they receive."""

import os
import secrets
import tempfile

# One key for the test process and the processes it starts (they inherit the environment).
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))

# Queues of their own (read by project.settings), so a test run never consumes or leaves messages meant
# for a running demo; a shorter dispatch queue, so the backpressure test can overflow it quickly.
os.environ.setdefault("OBSERVERS_QUEUE", "observers-test")
os.environ.setdefault("OBSERVERS_QUEUE_MAX_LENGTH", "1000")
# The test client and the browser test's gunicorn speak plain http.
os.environ.setdefault("HTTPS", "false")

# Before prometheus_client is imported: the test process and its worker share one metrics directory.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="observers-metrics-"))

from project.settings import *  # noqa: F403
from project.settings import BASE_DIR, DATABASES, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
# The project's URLs plus the test app's async views (served by uvicorn in tests/test_async.py).
ROOT_URLCONF = "tests.urls"


# A worker process must open the same test database as the test process: a file, not :memory:.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "test_db.sqlite3")}

OBSERVERS_QUARANTINE_AFTER = 3

# Fault tests tune these in the processes they start.
OBSERVERS_BATCH_SIZE = int(os.environ.get("OBSERVERS_BATCH_SIZE", "250"))
OBSERVERS_CALLBACK_TIME_LIMIT = float(os.environ.get("OBSERVERS_CALLBACK_TIME_LIMIT", "2.0"))
OBSERVERS_DELIVER_QUEUE_MAX_BYTES = int(
    os.environ.get("OBSERVERS_DELIVER_QUEUE_MAX_BYTES", str(256 * 1024 * 1024))
)
OBSERVERS_OWNER_GRACE = float(os.environ.get("OBSERVERS_OWNER_GRACE", "60"))
OBSERVERS_SHED_QUEUE_MAX_LENGTH = int(os.environ.get("OBSERVERS_SHED_QUEUE_MAX_LENGTH", "100000"))

# Webhooks: the test receivers listen on plain http on 127.0.0.1, the one loopback address let through;
# a short retry schedule (the last retry parked in the database, for the sweep) and a low disable limit.
OBSERVERS_WEBHOOK_ALLOW_HTTP = True
OBSERVERS_WEBHOOK_ALLOW = ["127.0.0.1"]
OBSERVERS_WEBHOOK_RESOLVE = {"receiver.test": ["127.0.0.2"], "allowed.test": ["127.0.0.1"]}
OBSERVERS_WEBHOOK_RETRY_SCHEDULE = [0.2, 0.4, 0.6, 3600]
OBSERVERS_WEBHOOK_DISABLE_AFTER_FAILURES = 6
OBSERVERS_WEBHOOK_TIMEOUT = float(os.environ.get("OBSERVERS_WEBHOOK_TIMEOUT", "2.0"))
OBSERVERS_WEBHOOK_ATTEMPTS_KEPT = 5

# A small stream buffer, so the slow-client test needs few changes to pass it (the resume tests' server
# sets a larger one through the environment).
OBSERVERS_STREAM_BUFFER = int(os.environ.get("OBSERVERS_STREAM_BUFFER", "20"))
# Stream tests tune these in the servers they start.
OBSERVERS_STREAM_WRITE_TIMEOUT = float(os.environ.get("OBSERVERS_STREAM_WRITE_TIMEOUT", "30"))
OBSERVERS_STREAM_REAUTHORIZE_INTERVAL = float(os.environ.get("OBSERVERS_STREAM_REAUTHORIZE_INTERVAL", "60"))

# Every add waits this out after its commit (a short one keeps the suite fast; the absence-lease
# test sets a longer one for itself and its notifier process through the environment).
OBSERVERS_ABSENCE_TTL = float(os.environ.get("OBSERVERS_ABSENCE_TTL", "0.05"))
# The presence tests start notifier processes with views on or off, and a longer view lease.
OBSERVERS_PRESENCE_VIEW = bool(os.environ.get("OBSERVERS_PRESENCE_VIEW", "1"))
OBSERVERS_PRESENCE_VIEW_LEASE = float(os.environ.get("OBSERVERS_PRESENCE_VIEW_LEASE", "1.0"))

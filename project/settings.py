"""Django settings: every URL and secret comes from the environment, read here and nowhere else."""

from pathlib import Path

import django
import environ
from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        # A key drawn per process would sign sessions no other process accepts (gunicorn -w 2 logs
        # staff out on every other request): refuse to start instead.
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment (for instance to the output of "
            "python -c 'from django.core.management.utils import get_random_secret_key as k; print(k())'), "
            "or set DEBUG=true for local development."
        )
    SECRET_KEY = get_random_secret_key()  # development only: sessions last as long as the process
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# HTTPS only unless DEBUG: redirects, secure cookies, HSTS (`manage.py check --deploy` is clean). Behind
# a TLS-terminating proxy set SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO,https; a local trial over
# plain http sets HTTPS=false.
HTTPS = env.bool("HTTPS", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=HTTPS)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=HTTPS)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=HTTPS)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=HTTPS)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=HTTPS)
if env.str("SECURE_PROXY_SSL_HEADER", default=""):
    SECURE_PROXY_SSL_HEADER = tuple(env.list("SECURE_PROXY_SSL_HEADER"))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "observers_app",
    # This repository's development app (benchmarks, load and soak runs, the demo): not part of the wheel.
    "benchmarks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# A Content Security Policy (Django 6.0+; Django 5.2 has none): only this site's own scripts, styles,
# images and connections. The admin, the hub's pages included, has no inline script or style.
if django.VERSION >= (6, 0):
    from django.utils.csp import CSP

    MIDDLEWARE.insert(1, "django.middleware.csp.ContentSecurityPolicyMiddleware")
    SECURE_CSP = {"default-src": [CSP.SELF]}

ROOT_URLCONF = "project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "project.wsgi.application"

# The embedded default is a SQLite file; production sets a PostgreSQL DATABASE_URL.
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=600)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Workers and callers write concurrently: WAL, write locks taken up front, and a wait
    # instead of "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
# WhiteNoise serves what collectstatic gathered, with DEBUG off, as in production.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"observers_app": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")}},
}

# Celery, read by project/celery.py under the CELERY_ namespace. JSON only, never pickle.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="amqp://guest:guest@127.0.0.1:5672//")
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Task and sent events, so Flower shows every dispatch and delivery task.
CELERY_WORKER_SEND_TASK_EVENTS = env.bool("CELERY_WORKER_SEND_TASK_EVENTS", default=True)
CELERY_TASK_SEND_SENT_EVENT = env.bool("CELERY_TASK_SEND_SENT_EVENT", default=True)

# The hub: "observers_app" in INSTALLED_APPS is all it needs. It brings its own queues, routes for its
# own tasks and beat entry (the sweep); run the usual `celery -A project worker` and `celery -A project beat`.
# Optional tuning, each with its default in observers_app/conf.py (docs/settings.md lists them all):
OBSERVERS_QUEUE = env.str("OBSERVERS_QUEUE", default="observers")
OBSERVERS_QUEUE_MAX_LENGTH = env.int("OBSERVERS_QUEUE_MAX_LENGTH", default=100_000)
# On a RabbitMQ cluster: replicated quorum queues.
OBSERVERS_QUORUM_QUEUES = env.bool("OBSERVERS_QUORUM_QUEUES", default=False)
OBSERVERS_SWEEP_INTERVAL = env.float("OBSERVERS_SWEEP_INTERVAL", default=30.0)
# Every notification kept per variable, for history(), streams that resume and replays.
OBSERVERS_HISTORY = env.bool("OBSERVERS_HISTORY", default=True)
# /observers/metrics answers requests from these addresses, or bearing this token (for a scraper
# on another host): "Authorization: Bearer <token>".
OBSERVERS_METRICS_TOKEN = env.str("OBSERVERS_METRICS_TOKEN", default="")
OBSERVERS_METRICS_ALLOWED_IPS = env.list("OBSERVERS_METRICS_ALLOWED_IPS", default=["127.0.0.1", "::1"])
# Webhook observers (docs/webhooks.md) reach https endpoints on public addresses only, unless these say so.
OBSERVERS_WEBHOOK_ALLOW_HTTP = env.bool("OBSERVERS_WEBHOOK_ALLOW_HTTP", default=False)
OBSERVERS_WEBHOOK_ALLOW = env.list("OBSERVERS_WEBHOOK_ALLOW", default=[])
# Pages of these other origins may read streams opened with a token (docs/streams.md), e.g.
# OBSERVERS_STREAM_ALLOWED_ORIGINS=https://app.example.com
OBSERVERS_STREAM_ALLOWED_ORIGINS = env.list("OBSERVERS_STREAM_ALLOWED_ORIGINS", default=[])
OBSERVERS_STREAM_GC_FREEZE = env.bool("OBSERVERS_STREAM_GC_FREEZE", default=True)
OBSERVERS_STREAM_RESUME_WINDOW = env.float("OBSERVERS_STREAM_RESUME_WINDOW", default=30.0)
# Streams one client may hold open per web process (docs/streams.md#limits): a load test from one
# address with one token raises them.
OBSERVERS_STREAM_MAX_PER_USER = env.int("OBSERVERS_STREAM_MAX_PER_USER", default=10)
OBSERVERS_STREAM_MAX_PER_TOKEN = env.int("OBSERVERS_STREAM_MAX_PER_TOKEN", default=10)
OBSERVERS_STREAM_MAX_PER_ADDRESS = env.int("OBSERVERS_STREAM_MAX_PER_ADDRESS", default=100)
# Worker-wide, for the dedicated hub worker (docs/install.md, "Production"): Celery's Django fixup
# otherwise reconnects to the database around every task (~5-10 ms on PostgreSQL).
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)

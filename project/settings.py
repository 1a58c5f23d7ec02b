"""Django settings: every URL and secret comes from the environment, read here and nowhere else."""

from pathlib import Path

import environ
from django.core.management.utils import get_random_secret_key
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# Unset, each process draws its own key: fine for the demo and tests, set it in any deployment.
SECRET_KEY = env.str("SECRET_KEY", default="") or get_random_secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "observers_app",
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
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="observers")
# Backpressure: the dispatch queue holds at most OBSERVERS_QUEUE_MAX_LENGTH notifications; past that the
# oldest are dropped (newest wins) into "<queue>.shed", where the sweep counts them (notifications_shed).
# Deliveries of fan-outs already started have a queue of their own, never shed. Changing these arguments
# on an existing queue needs the queue deleted first (RabbitMQ refuses a redeclare with other arguments).
OBSERVERS_QUEUE_MAX_LENGTH = env.int("OBSERVERS_QUEUE_MAX_LENGTH", default=100_000)
# On a RabbitMQ cluster, replicate the hub's queues as quorum queues (drop-head and dead-lettering work).
OBSERVERS_QUORUM_QUEUES = env.bool("OBSERVERS_QUORUM_QUEUES", default=False)
_QUEUE_TYPE = {"x-queue-type": "quorum"} if OBSERVERS_QUORUM_QUEUES else {}
OBSERVERS_SHED_QUEUE = f"{CELERY_TASK_DEFAULT_QUEUE}.shed"
OBSERVERS_DELIVER_QUEUE = f"{CELERY_TASK_DEFAULT_QUEUE}.deliver"
CELERY_TASK_QUEUES = (
    Queue(
        CELERY_TASK_DEFAULT_QUEUE,
        Exchange(CELERY_TASK_DEFAULT_QUEUE),
        routing_key=CELERY_TASK_DEFAULT_QUEUE,
        queue_arguments={
            "x-max-length": OBSERVERS_QUEUE_MAX_LENGTH,
            "x-overflow": "drop-head",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": OBSERVERS_SHED_QUEUE,
            **_QUEUE_TYPE,
        },
    ),
    Queue(
        OBSERVERS_DELIVER_QUEUE,
        Exchange(OBSERVERS_DELIVER_QUEUE),
        routing_key=OBSERVERS_DELIVER_QUEUE,
        queue_arguments=_QUEUE_TYPE,
    ),
)
CELERY_TASK_ROUTES = {"observers.deliver": {"queue": OBSERVERS_DELIVER_QUEUE}}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup otherwise closes the database connection around every task: a new
# PostgreSQL connection (~5-10 ms) per task. Reconnect every 1,000 tasks instead.
CELERY_DB_REUSE_MAX = 1000
# Unacknowledged messages a worker may hold, per pool process: dispatch messages wait in the worker
# until their batch (up to 50, see observers_app/batching.py) has run, so it must hold several batches.
CELERY_WORKER_PREFETCH_MULTIPLIER = 100
# Task and sent events, so Flower shows every dispatch and delivery task.
CELERY_WORKER_SEND_TASK_EVENTS = env.bool("CELERY_WORKER_SEND_TASK_EVENTS", default=True)
CELERY_TASK_SEND_SENT_EVENT = env.bool("CELERY_TASK_SEND_SENT_EVENT", default=True)

# The beat sweep of dead owners and their observers (run beat: celery -A project beat).
OBSERVERS_SWEEP_INTERVAL = env.float("OBSERVERS_SWEEP_INTERVAL", default=30.0)
CELERY_BEAT_SCHEDULE = {
    "observers-sweep": {"task": "observers.sweep", "schedule": OBSERVERS_SWEEP_INTERVAL},
}

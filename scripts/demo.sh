#!/usr/bin/env bash
# The demo: installs, migrates, starts a real Celery worker, notifies observers, prints the hub's stats.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
# The example project refuses to start without a key when DEBUG is off: the demo draws its own.
SECRET_KEY="${SECRET_KEY:-$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))')}"
export SECRET_KEY
exec .venv/bin/python manage.py observers_demo

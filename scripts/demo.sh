#!/usr/bin/env bash
# The demo: installs, migrates, starts a real Celery worker, notifies observers, prints the hub's stats.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
exec .venv/bin/python manage.py observers_demo

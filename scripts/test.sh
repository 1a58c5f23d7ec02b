#!/usr/bin/env bash
# The tests: installs, then ruff, mypy, the docs build (warnings are errors) and the test matrix
# (tox.ini: every supported Python and Django pair against RabbitMQ and PostgreSQL, the SQLite pass,
# the fault suite and the host-project test). Arguments go to `tox run`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pythons.sh
bash scripts/setup-venv.sh
# The browser tests drive Debian's Chromium (Playwright's own browser download does not work here).
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium
fi
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/observers}"
export CELERY_BROKER_URL="${CELERY_BROKER_URL:-amqp://guest:guest@127.0.0.1:5672//}"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy .
bash scripts/docs.sh
.venv/bin/tox run "$@"

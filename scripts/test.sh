#!/usr/bin/env bash
# The tests: installs, then ruff, mypy, the docs build (warnings are errors) and the whole pytest suite
# against RabbitMQ, on PostgreSQL and again on the embedded SQLite default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
# The browser test drives Debian's Chromium (Playwright's own browser download does not work here).
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
echo "== pytest on PostgreSQL ($DATABASE_URL)"
.venv/bin/pytest "$@"
echo "== pytest on SQLite"
rm -f test_db.sqlite3*
# The host-project test builds its own project and database: once is enough.
DATABASE_URL="sqlite:///$PWD/db.sqlite3" .venv/bin/pytest -m "not host_project and not faults" "$@"
echo "== the fault suite (its own RabbitMQ on 5674 and PostgreSQL on 5434, broken on purpose)"
.venv/bin/pytest -m faults "$@"

#!/usr/bin/env bash
# Creates .venv with Python 3.13 (the example project's; once) and installs the pinned requirements
# (runtime and dev tools) and the app itself into it. The test matrix (tox.ini) makes its own.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pythons.sh
PYTHON="${PYTHON:-python3.13}"
if [ -x .venv/bin/python ] && ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))'; then
  rm -rf .venv  # made by an earlier version of this script, on another Python
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv || { echo "venv failed: on Debian, apt-get install python3-venv" >&2; exit 1; }
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements-dev.txt
# The app itself, editable, so its package metadata (observers_app.__version__) matches the checkout.
.venv/bin/python -m pip install --quiet --no-deps -e .

#!/usr/bin/env bash
# Creates .venv with Python 3.11 (once) and installs the pinned requirements (runtime and dev tools) into it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv || { echo "venv failed: on Debian, apt-get install python3.11-venv" >&2; exit 1; }
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements-dev.txt
# The app itself, editable, so its package metadata (observers_app.__version__) matches the checkout.
.venv/bin/python -m pip install --quiet --no-deps -e .

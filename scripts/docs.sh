#!/usr/bin/env bash
# The docs: builds the Sphinx site in docs/ into docs/_build/html, warnings as errors.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/sphinx-build ] || bash scripts/setup-venv.sh
.venv/bin/sphinx-build -E -W --keep-going -b html docs docs/_build/html "$@"

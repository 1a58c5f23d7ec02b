#!/usr/bin/env bash
# Validates docker-compose.yml with a real Compose implementation, without a Docker engine:
# `config -q` parses the file, interpolates ${VARS}, applies YAML anchors and merge keys, checks it
# against Compose's schema (unknown keys, wrong types, bad depends_on conditions) and resolves its
# references (undeclared named volumes, depends_on an undefined service, a missing build path).
#
# Uses `docker compose` (v2 plugin) or `docker-compose` if one is installed, else installs Debian's
# docker-compose (1.29) with apt-get (root, Debian). Before trusting the verdict it checks that the
# validator rejects known-broken files, so a validator that accepts anything fails the script.
#
# Usage: bash scripts/check-compose.sh [FILE]   (default: the repo's docker-compose.yml)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FILE="${1:-$ROOT/docker-compose.yml}"
[ -f "$FILE" ] || { echo "check-compose: no such file: $FILE" >&2; exit 1; }
FILE="$(cd "$(dirname "$FILE")" && pwd)/$(basename "$FILE")"
cd "$ROOT"

# The file requires its credentials (${VAR:?...}, from .env); any values will do for validation.
export SECRET_KEY="${SECRET_KEY:-check-compose-dummy-key}"
export POSTGRES_PASSWORD="${POSTGRES_PASSWORD:-check-compose-dummy}"
export RABBITMQ_PASSWORD="${RABBITMQ_PASSWORD:-check-compose-dummy}"
export FLOWER_BASIC_AUTH="${FLOWER_BASIC_AUTH:-check:compose-dummy}"

COMPOSE=()
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
else
  command -v apt-get >/dev/null 2>&1 || { echo "check-compose: install docker-compose (no apt-get here)" >&2; exit 1; }
  SUDO=()
  [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  LOG="$(mktemp)"
  echo "check-compose: installing Debian's docker-compose" >&2
  if ! "${SUDO[@]}" apt-get install -y --no-install-recommends docker-compose >"$LOG" 2>&1; then
    # A fresh machine may have no package lists yet.
    if ! { "${SUDO[@]}" apt-get update && "${SUDO[@]}" apt-get install -y --no-install-recommends docker-compose; } >"$LOG" 2>&1; then
      cat "$LOG" >&2
      exit 1
    fi
  fi
  rm -f "$LOG"
  COMPOSE=(docker-compose)
fi
VERSION="$("${COMPOSE[@]}" version --short 2>/dev/null || "${COMPOSE[@]}" version | head -n 1)"

# Relative paths (build: .) resolve against the repo root, wherever FILE is.
validate() { "${COMPOSE[@]}" --project-directory "$ROOT" -f "$1" config -q; }

# The validator must reject broken files: an unknown key, a wrong type, an undeclared volume.
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
printf 'services:\n  app:\n    image: busybox\n    depends_on: [db]\n  db:\n    image: busybox\n' > "$TMP/ok.yml"
printf 'services:\n  app:\n    image: busybox\n    dependz_on: [db]\n  db:\n    image: busybox\n' > "$TMP/unknown-key.yml"
printf 'services:\n  app:\n    image: busybox\n    ports: 8000\n' > "$TMP/wrong-type.yml"
printf 'services:\n  app:\n    image: busybox\n    volumes: ["data:/data"]\n' > "$TMP/undeclared-volume.yml"
validate "$TMP/ok.yml" >/dev/null 2>&1 || { echo "check-compose: ${COMPOSE[*]} rejects a valid file" >&2; exit 1; }
for broken in unknown-key wrong-type undeclared-volume; do
  if validate "$TMP/$broken.yml" >/dev/null 2>&1; then
    echo "check-compose: ${COMPOSE[*]} accepted a broken file ($broken): not a real validator" >&2
    exit 1
  fi
done

echo "check-compose: validating ${FILE#"$ROOT"/} with '${COMPOSE[*]} config -q' ($VERSION)"
validate "$FILE"
echo "check-compose: ${FILE#"$ROOT"/} is valid"

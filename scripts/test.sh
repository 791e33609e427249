#!/usr/bin/env bash
# Install what the tests need from the lock, then run them. Used by CI (.ci/run) exactly as README.md gives it.
#   bash scripts/test.sh [pytest args...]          (PYTHON=/path/to/python to use another interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# Every package at the locks' versions (from requirements*.in via scripts/lock.sh; both locks, so the app's
# own lock is installed and checked too), then this project as an editable package (the `vrnn` command),
# built with the locked setuptools.
$PY -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
$PY -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
# Debian's Chromium for the browser tests (playwright's own browser download is not used).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; browser tests will be skipped"
fi
$PY -m ruff check .
$PY -m pytest "$@"

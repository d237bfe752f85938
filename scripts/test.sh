#!/usr/bin/env bash
# Install everything (venv, earmark, and Chromium for the browser tests when we may) and run the tests.
# Extra arguments go to pytest, e.g. scripts/test.sh -k audio
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests…"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; browser tests will be skipped" >&2
fi
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
ruff check src tests benchmarks
python -m pytest "$@"

#!/usr/bin/env bash
# Install earmark and run the demo: the main job end to end on the Free Spoken Digit Dataset.
# Data: --data DIR or EARMARK_FSDD=DIR (a local copy), else a verified download, else a small
# synthesized stand-in, clearly labelled. Extra arguments go to `earmark demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
if [ -z "${EARMARK_FSDD:-}" ] && [ -d ../shared/data/fsdd ]; then
  export EARMARK_FSDD=../shared/data/fsdd
fi
earmark demo "$@"

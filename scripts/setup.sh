#!/usr/bin/env bash
# Create .venv and install earmark with everything its tests and demo use.
# PyTorch: a torch already importable in the venv (a CUDA build, say) is kept; otherwise
# EARMARK_TORCH (default torch==2.13.0, the CPU build of this project's machines) is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install --quiet --disable-pip-version-check --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
if ! python -c "import torch" >/dev/null 2>&1; then
  python -m pip install --quiet --disable-pip-version-check "${EARMARK_TORCH:-torch==2.13.0}" 2>&1 | grep -v "^WARNING: Location" || true
fi
python -m pip install --quiet --disable-pip-version-check -e ".[all,test]" 2>&1 | grep -v "^WARNING: Location" || true
python -c "import earmark, torch; print(f'earmark {earmark.__version__} installed (torch {torch.__version__})')"

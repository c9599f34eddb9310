#!/usr/bin/env bash
# Creates ./.venv with the pinned dependencies. Idempotent: re-running it is cheap.
# GPU users: set MAML_TF_PACKAGE=tensorflow to install the full (CUDA-capable) wheel instead
# of tensorflow-cpu, e.g.  MAML_TF_PACKAGE="tensorflow[and-cuda]==2.21.0" bash setup.sh
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" - <<'PY' || { echo "setup.sh: Python 3.11 is required (TFP 0.25 imports distutils)" >&2; exit 1; }
import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)
PY
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
if [ -n "${MAML_TF_PACKAGE:-}" ]; then
  grep -v '^tensorflow-cpu' requirements.txt > .venv/requirements.gpu.txt
  .venv/bin/python -m pip install --quiet "$MAML_TF_PACKAGE" -r .venv/requirements.gpu.txt
else
  .venv/bin/python -m pip install --quiet -r requirements.txt
fi
# tf-keras (needed by TFP) declares the full `tensorflow` wheel: install it without deps.
.venv/bin/python -m pip install --quiet --no-deps tf-keras==2.21.0
echo "setup.sh: environment ready in .venv"

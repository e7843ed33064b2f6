#!/usr/bin/env bash
# One binary for every torch from 2.10: builds the wheel once with this
# machine's torch, installs it unchanged into a virtual environment with an
# older torch (GDN_OLDER_TORCH, default 2.10.0, the library's stable-ABI
# target) and runs the tests there (CPU and Triton-interpreter ones where no
# GPU is visible). run_tests.sh runs it after a full run. Where that torch
# cannot be installed (no package index: the GPU machine) it says so and
# skips, except under CI=true, where that is a failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
OLDER="${GDN_OLDER_TORCH:-2.10.0}"
VENV="build/torch-$OLDER-venv"
mkdir -p build

echo "older torch: building the wheel with torch $("$PY" -c 'import torch; print(torch.__version__)')"
rm -rf build/wheel
if ! "$PY" -m pip wheel -v --no-deps --no-build-isolation -w build/wheel . >build/pip-wheel.log 2>&1; then
  tail -n 40 build/pip-wheel.log
  echo "older torch: building the wheel failed" >&2
  exit 1
fi
wheel="$(ls "$ROOT"/build/wheel/gdn_ext-*.whl)"

if ! "$VENV/bin/python" -c "import torch, pytest, xdist; assert torch.__version__.startswith('$OLDER')" 2>/dev/null; then
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  echo "older torch: installing torch==$OLDER into $VENV (log: build/older-torch-install.log)"
  if ! "$VENV/bin/python" -m pip install -q "torch==$OLDER" pytest pytest-xdist numpy \
      >build/older-torch-install.log 2>&1; then
    tail -n 5 build/older-torch-install.log
    if [ "${CI:-}" = "true" ]; then
      echo "older torch: could not install torch==$OLDER" >&2
      exit 1
    fi
    echo "older torch: SKIPPED, torch==$OLDER could not be installed here (no package index?)"
    exit 0
  fi
fi
echo "older torch: testing $(basename "$wheel") on torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
# The CMake test would build the sources again, against this older torch.
GDN_EXT_WHEEL="$wheel" PYTHON="$ROOT/$VENV/bin/python" bash scripts/run_tests.sh -k "not cmake"

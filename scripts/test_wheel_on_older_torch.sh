#!/usr/bin/env bash
# One binary for every torch from 2.10: makes a virtual environment with an
# older torch (GDN_OLDER_TORCH, default 2.10.0, the library's stable-ABI
# target), builds the wheel there with `pip wheel .` (build isolation: the
# newest torch the index has builds it), installs it unchanged beside the
# older torch and runs the tests there (CPU and Triton-interpreter ones where no
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
# `pip wheel .` as a user runs it, with build isolation: pyproject.toml's
# build requirements bring the newest torch the index has into the build
# environment, whatever the venv holds.
echo "older torch: building the wheel with build isolation (log: build/pip-wheel.log)"
rm -rf build/wheel
if ! "$VENV/bin/python" -m pip wheel -v --no-deps -w build/wheel . >build/pip-wheel.log 2>&1; then
  tail -n 40 build/pip-wheel.log
  echo "older torch: building the wheel failed" >&2
  exit 1
fi
grep -m1 "gdn_ext setup:" build/pip-wheel.log || true
wheel="$(ls "$ROOT"/build/wheel/gdn_ext-*.whl)"
echo "older torch: testing $(basename "$wheel") on torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
# The CMake test would build the sources again, against this older torch.
GDN_EXT_WHEEL="$wheel" PYTHON="$ROOT/$VENV/bin/python" bash scripts/run_tests.sh -k "not cmake"

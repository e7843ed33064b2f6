#!/usr/bin/env bash
# Sets up (installs torch etc. only if missing), builds gdn_ext, runs the
# tests. Extra arguments go to pytest. A full run (no arguments) then checks
# that the wheel built here passes the CPU tests on an older torch
# (scripts/test_wheel_on_older_torch.sh).
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
# Triton compiles one kernel per specialisation: spread the tests over the
# cores (pytest-xdist), or run them in one process where it is missing.
workers=()
has_module xdist && workers=(-n "${GDN_TEST_WORKERS:-auto}")
status=0
"$PY" -m pytest tests -ra -q "${workers[@]}" "$@" || status=$?
if [ $# -eq 0 ] && [ -z "${GDN_EXT_WHEEL:-}" ]; then
  bash scripts/test_wheel_on_older_torch.sh || status=$?
fi
exit $status

#!/usr/bin/env bash
# Sets up (installs torch etc. only if missing), builds gdn_ext, runs the tests.
# Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
# Triton compiles one kernel per specialisation: spread the tests over the
# cores (pytest-xdist), or run them in one process where it is missing.
workers=()
has_module xdist && workers=(-n "${GDN_TEST_WORKERS:-auto}")
exec "$PY" -m pytest tests -ra -q "${workers[@]}" "$@"

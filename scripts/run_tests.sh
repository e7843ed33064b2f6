#!/usr/bin/env bash
# Sets up (installs torch etc. only if missing), builds gdn_ext, runs the tests.
# Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
exec "$PY" -m pytest tests -ra -q "$@"

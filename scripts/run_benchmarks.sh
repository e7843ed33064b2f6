#!/usr/bin/env bash
# Sets up, builds gdn_ext, and prints the parity + timing table of every
# backend on this machine's device (GPU if present, else CPU). Writes JSON
# and a PNG plot to benchmarks/out/. Extra arguments go to the benchmark.
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
# The plot needs matplotlib: installed where pip can reach an index, skipped
# (with a note) where it cannot.
has_module matplotlib || pip_install --retries 0 --timeout 10 matplotlib \
  || echo "setup: matplotlib unavailable; the benchmark will skip its plot"
mkdir -p benchmarks/out
exec "$PY" benchmarks/bench_post_conv.py --json benchmarks/out/results.json \
  --plot benchmarks/out/results.png "$@"

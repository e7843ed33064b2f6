#!/usr/bin/env bash
# Sets up, builds gdn_ext, and prints the parity + timing table of every
# backend of op 1 on this machine's device (GPU if present, else CPU), then,
# on a GPU, op 2's table. Writes JSON and PNG plots to benchmarks/out/. Extra
# arguments go to op 1's benchmark.
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
# The plot needs matplotlib: installed where pip can reach an index, skipped
# (with a note) where it cannot.
has_module matplotlib || pip_install --retries 0 --timeout 10 matplotlib \
  || echo "setup: matplotlib unavailable; the benchmark will skip its plot"
mkdir -p benchmarks/out
"$PY" benchmarks/bench_post_conv.py --json benchmarks/out/results.json \
  --plot benchmarks/out/results.png "$@"
if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  "$PY" benchmarks/bench_conv_prep.py --json benchmarks/out/conv_results.json \
    --plot benchmarks/out/conv_results.png
else
  echo "op 2 benchmark: skipped (it times the GPU; no CUDA device is visible)"
fi

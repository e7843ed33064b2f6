#!/usr/bin/env bash
# compute-sanitizer's memcheck, racecheck and initcheck over
# scripts/sanitizer_cases.py (the op's CUDA and Triton kernels, and the
# copies around them). The caching allocator is off so that each buffer is its own
# allocation and an out-of-bounds access cannot land in a neighbour.
# Exits non-zero if any tool reports an error. Arguments go to the cases
# script (--quick: a smaller subset).
set -uo pipefail
cd "$(dirname "$0")/.."
SANITIZER="${SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}"
if [ ! -x "$SANITIZER" ]; then
  echo "run_sanitizer: compute-sanitizer not found" >&2
  exit 2
fi
export PYTORCH_NO_CUDA_MEMORY_CACHING=1
status=0
for tool in memcheck racecheck initcheck; do
  echo "## compute-sanitizer --tool $tool"
  "$SANITIZER" --tool "$tool" --error-exitcode 99 \
    --print-limit 20 python3 scripts/sanitizer_cases.py "$@" 2>&1 | tail -n 25
  rc=${PIPESTATUS[0]}
  echo "## $tool exit code $rc"
  [ "$rc" -eq 0 ] || status=1
done
exit $status

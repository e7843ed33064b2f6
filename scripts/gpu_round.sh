#!/usr/bin/env bash
# One round on a GPU machine (the device tool's): build, benchmark, tests, each
# under its own time limit so that the round fits one device call. Logs and
# results go to $OUT (the device tool's folder that comes back), else
# build/round. Arguments: which steps, in order (default: bench tests):
# build, bench, conv_bench, tests, wheel_tests, host, pdl, ncu, sanitizer.
#   BENCH_TIMEOUT, TEST_TIMEOUT (s); BENCH_ARGS, TEST_ARGS: extra arguments.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-build/round}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
steps=("${@:-bench tests}")
read -r -a steps <<<"${steps[*]}"

{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv
  python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)'
  nvcc --version | tail -n 2; } >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

for step in "${steps[@]}"; do
  case "$step" in
    build)
      bash scripts/setup_env.sh 2>&1 | tee "$OUT/build.log" ;;
    bench)
      # shellcheck disable=SC2086
      timeout "${BENCH_TIMEOUT:-300}" bash scripts/run_benchmarks.sh ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log"
      cp benchmarks/out/results.json benchmarks/out/results.png benchmarks/out/conv_results.json \
        benchmarks/out/conv_results.png "$OUT/" 2>/dev/null ;;
    conv_bench)  # op 2's table alone
      # shellcheck disable=SC2086
      timeout "${BENCH_TIMEOUT:-300}" python3 benchmarks/bench_conv_prep.py --json "$OUT/conv_results.json" \
        --plot "$OUT/conv_results.png" ${CONV_BENCH_ARGS:-} 2>&1 | tee "$OUT/conv_bench.log" ;;
    tests)
      # shellcheck disable=SC2086
      GDN_TEST_TIMING_LOG="$OUT/test_timing.log" timeout "${TEST_TIMEOUT:-300}" \
        bash scripts/run_tests.sh --durations=10 ${TEST_ARGS:-} 2>&1 \
        | tee "$OUT/tests.log" | grep -v -E '^[.sF]+ +\[' ;;
    wheel_tests)  # the wheel in build/wheel (built on another machine), installed unchanged
      # shellcheck disable=SC2086
      GDN_EXT_WHEEL="$(ls build/wheel/gdn_ext-*.whl)" GDN_TEST_TIMING_LOG="$OUT/test_timing.log" \
        timeout "${TEST_TIMEOUT:-300}" \
        bash scripts/run_tests.sh --durations=10 ${TEST_ARGS:-} 2>&1 \
        | tee "$OUT/wheel_tests.log" | grep -v -E '^[.sF]+ +\[' ;;
    host)  # eager host time: fresh outputs, out=, the empty op
      timeout 300 python3 benchmarks/bench_host.py --json "$OUT/host.json" 2>&1 | tee "$OUT/host.log" ;;
    pdl)  # the CUDA op with and without programmatic dependent launch
      for flag in 0 1; do
        echo "## GDN_EXT_DISABLE_PDL=$flag"
        GDN_EXT_DISABLE_PDL=$flag timeout 240 python3 benchmarks/bench_post_conv.py --impls "gdn_ext cuda" \
          --shapes 16,32,128,128 2,4,128,128 --lengths 1 16 2048 8192 --skip-variants 2>&1 \
          | grep -E '^ +[0-9]+ ' ; done 2>&1 | tee "$OUT/pdl.log" ;;
    ncu)  # what the channel-first kernel waits on, and the short row-major call
      for args in "--layout channel_first --L 32768" "--layout row_major --L 32768" "--layout row_major --L 1"; do
        echo "## ncu $args"
        # shellcheck disable=SC2086
        timeout 120 ncu --clock-control none -k regex:'channel_first|rowmajor' --launch-skip 1 --launch-count 1 \
          --section SpeedOfLight --section Occupancy --section WarpStateStats --section MemoryWorkloadAnalysis \
          python3 benchmarks/profile_case.py $args 2>&1 | grep -v '^==PROF==' ; done 2>&1 | tee "$OUT/ncu.log" ;;
    sanitizer)
      timeout "${SANITIZER_TIMEOUT:-300}" bash scripts/run_sanitizer.sh 2>&1 | tee "$OUT/sanitizer.log" ;;
    *) echo "gpu_round: unknown step $step" >&2; exit 2 ;;
  esac
done

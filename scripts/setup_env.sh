# Sourced by run_tests.sh and run_benchmarks.sh. Leaves $PY with torch, the
# test tools and gdn_ext: built from this checkout (editable), or, where
# GDN_EXT_WHEEL names a wheel, that wheel installed unchanged (a wheel built
# with another torch: the library targets torch's stable ABI). Installs only
# what is missing, so it runs offline on a machine that already has torch.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
cd "$ROOT"

has_module() { "$PY" -c "import $1" >/dev/null 2>&1; }
pip_install() { echo "setup: pip install $*"; "$PY" -m pip install -q "$@"; }

has_module torch || pip_install "torch>=2.10"
missing=()
for pair in pytest:pytest xdist:pytest-xdist numpy:numpy setuptools:setuptools wheel:wheel ninja:ninja; do
  has_module "${pair%%:*}" || missing+=("${pair#*:}")
done
[ ${#missing[@]} -eq 0 ] || pip_install "${missing[@]}"

# torch's CUDA_HOME guess follows the nvcc on PATH, which may be a wrapper.
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDA_HOME=/usr/local/cuda
fi
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
# Tests and benchmarks import the gdn_ext that was installed, never the
# checkout's directory by accident (Python 3.11+: no cwd on sys.path).
export PYTHONSAFEPATH=1

mkdir -p build
if [ -n "${GDN_EXT_WHEEL:-}" ]; then
  echo "setup: installing $GDN_EXT_WHEEL as it is (no build)"
  "$PY" -m pip install -q --no-deps --force-reinstall "$GDN_EXT_WHEEL"
else
  echo "setup: building gdn_ext (log: build/pip-install.log)"
  if ! "$PY" -m pip install -v --no-build-isolation --no-deps -e . >build/pip-install.log 2>&1; then
    tail -n 60 build/pip-install.log
    echo "setup: building gdn_ext failed" >&2
    exit 1
  fi
  grep -m1 "gdn_ext setup:" build/pip-install.log || true
fi
(cd "$ROOT/tests" && "$PY" - <<'PY')
import torch, gdn_ext
cuda = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
print(f"setup: torch {torch.__version__}, device: {cuda}, gdn_ext from "
      f"{gdn_ext.__file__.rsplit('/', 2)[0]}, compiled library: {gdn_ext.HAS_COMPILED_LIBRARY}, "
      f"CUDA kernel: {gdn_ext.HAS_CUDA_KERNEL}")
PY

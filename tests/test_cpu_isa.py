"""The CPU kernel is compiled once per instruction set (DEFAULT, AVX2,
AVX512) and chosen the way ATen chooses its own kernels, so
ATEN_CPU_CAPABILITY selects it. Every copy this CPU can run passes the CPU
tests of the gate sweep (Sleef's vector exp and log1p on AVX2/AVX512 must
keep g within 1e-6 over [-80, 80]), parity and layouts."""
import os
import subprocess
import sys

import pytest
import torch

ISAS = ["default", "avx2", "avx512"]
HERE = os.path.dirname(os.path.abspath(__file__))


def runnable(isa):
    capability = torch.backends.cpu.get_cpu_capability().lower()
    return capability in ISAS and ISAS.index(isa) <= ISAS.index(capability)


@pytest.mark.parametrize("isa", ISAS)
def test_cpu_kernel_for_isa(isa):
    if not runnable(isa):
        pytest.skip(f"this CPU runs ATen capability "
                    f"{torch.backends.cpu.get_cpu_capability()}, not {isa.upper()}")
    if isa.upper() == torch.backends.cpu.get_cpu_capability():
        pytest.skip(f"{isa.upper()} is this CPU's own kernel: every CPU test in this run uses it")
    # CPU tests only, on a few threads: on the GPU machine this runs beside
    # the GPU tests' workers.
    env = dict(os.environ, ATEN_CPU_CAPABILITY=isa, CUDA_VISIBLE_DEVICES="",
               OMP_NUM_THREADS="2")
    chosen = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
        env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert chosen == isa.upper(), f"ATEN_CPU_CAPABILITY={isa} gave {chosen}"
    tests = [os.path.join(HERE, name)
             for name in ("test_gate.py", "test_parity.py", "test_layouts.py")]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-k", "cpu and not L2048", *tests],
        env=env, capture_output=True, text=True, cwd=os.path.dirname(HERE))
    assert run.returncode == 0, f"CPU tests with the {isa.upper()} kernel failed:\n" \
        + run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout.splitlines()[-1], run.stdout[-2000:]

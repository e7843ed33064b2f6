"""The CPU kernel is compiled once per instruction set (DEFAULT, AVX2,
AVX512) and chosen at run time from what the CPU supports; GDN_CPU_CAPABILITY
(or ATEN_CPU_CAPABILITY, as ATen reads it) lowers the choice. Every copy this
CPU can run passes the CPU tests of the gate sweep (the vector layer's own exp
and log1p must keep g within 1e-6 over [-80, 80]), parity and layouts."""
import ctypes
import os
import subprocess
import sys

import pytest

from _helpers import TESTS, subprocess_env
from gdn_ext import _library

ISAS = ["default", "avx2", "avx512"]

CAPABILITY = """
import ctypes, gdn_ext
lib = ctypes.CDLL(gdn_ext._library.LIBRARY_PATH)
lib.gdn_ext_cpu_capability.restype = ctypes.c_char_p
print(lib.gdn_ext_cpu_capability().decode())
"""


def library_capability():
    lib = ctypes.CDLL(_library.LIBRARY_PATH)
    lib.gdn_ext_cpu_capability.restype = ctypes.c_char_p
    return lib.gdn_ext_cpu_capability().decode()


def isa_env(variable, isa):
    # CPU tests only, on a few threads: on the GPU machine this runs beside
    # the GPU tests' workers.
    env = {name: value for name, value in subprocess_env(CUDA_VISIBLE_DEVICES="",
                                                         OMP_NUM_THREADS="2").items()
           if name not in ("GDN_CPU_CAPABILITY", "ATEN_CPU_CAPABILITY")}
    env[variable] = isa
    return env


def chosen_with(env):
    return subprocess.run([sys.executable, "-c", CAPABILITY], env=env, cwd=TESTS,
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def best():
    if not _library.HAS_COMPILED_LIBRARY:
        pytest.skip("no compiled library: the CPU backend is the float64 reference")
    env = {k: v for k, v in subprocess_env().items()
           if k not in ("GDN_CPU_CAPABILITY", "ATEN_CPU_CAPABILITY")}
    return chosen_with(env).lower()


@pytest.mark.parametrize("variable", ["GDN_CPU_CAPABILITY", "ATEN_CPU_CAPABILITY"])
@pytest.mark.parametrize("isa", ISAS)
def test_environment_lowers_the_choice(best, isa, variable):
    want = ISAS[min(ISAS.index(isa), ISAS.index(best))]
    assert chosen_with(isa_env(variable, isa)) == want.upper()


@pytest.mark.parametrize("isa", ISAS)
def test_cpu_kernel_for_isa(best, isa):
    if ISAS.index(isa) > ISAS.index(best):
        pytest.skip(f"this CPU runs the {best.upper()} kernel at best, not {isa.upper()}")
    if isa == best and best == library_capability().lower():
        pytest.skip(f"{isa.upper()} is this CPU's own kernel: every CPU test in this run uses it")
    env = isa_env("GDN_CPU_CAPABILITY", isa)
    tests = [os.path.join(TESTS, name)
             for name in ("test_gate.py", "test_parity.py", "test_layouts.py", "test_out.py")]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-k", "cpu and not L2048", *tests],
        env=env, capture_output=True, text=True, cwd=TESTS)
    assert run.returncode == 0, f"CPU tests with the {isa.upper()} kernel failed:\n" \
        + run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout.splitlines()[-1], run.stdout[-2000:]

"""The op as torch sees it: one schema, opcheck, torch.compile, the fallback
registrations when no library is present, and the build itself."""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

import gdn_ext
from _helpers import HAS_GPU, TESTS, Inputs, check_against_reference, requires_gpu, subprocess_env
from gdn_ext import _library

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_schemas_are_the_ones_declared_in_cpp():
    ops = {_library.NAME: torch.ops.gdn.fused_post_conv_prep,
           _library.CONV_NAME: torch.ops.gdn.causal_conv1d_post_conv_prep}
    with open(os.path.join(ROOT, "csrc", "schemas.cpp")) as f:
        src = "".join(line.strip().strip('"') for line in f if line.strip().startswith('"'))
    src = src.replace('""', "")
    for name, schema in _library.SCHEMAS:
        base, _, overload = name.partition(".")
        op = getattr(ops[base], overload or "default")
        assert str(op._schema) == f"{_library.NAMESPACE}::{name}{schema}"
        assert name + schema in src, name


def torch_cxx_symbols_needed(path):
    """The C++ symbols of torch (c10::, at::, torch:: outside the header-only
    stable API) that the shared library at `path` needs from elsewhere: a
    library that needs any loads only on the torch it was built with."""
    nm = subprocess.run(["nm", "-D", "--undefined-only", "--demangle", path],
                        capture_output=True, text=True, check=True).stdout
    return [line.split(maxsplit=1)[-1] for line in nm.splitlines()
            if any(ns in line for ns in ("c10::", "at::", "torch::", "caffe2::"))]


@pytest.mark.skipif(shutil.which("nm") is None, reason="nm (binutils) not installed")
def test_library_uses_only_the_stable_abi():
    """One binary for every torch from 2.10: the library calls torch only
    through the stable C shims (aoti_torch_*, torch_*)."""
    if not _library.HAS_COMPILED_LIBRARY:
        pytest.skip(f"no compiled library loaded ({_library.LIBRARY_ERROR or 'none built'})")
    assert torch_cxx_symbols_needed(_library.LIBRARY_PATH) == []
    nm = subprocess.run(["nm", "-D", "--undefined-only", _library.LIBRARY_PATH],
                        capture_output=True, text=True, check=True).stdout
    assert "aoti_torch_empty_strided" in nm  # the check above reads real output


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=requires_gpu)])
@pytest.mark.parametrize("layout", ["row_major", "channel_first", "ba_chunk", "padded", "offset",
                                    "strided_params"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "f32"])
def test_opcheck(device, layout, dtype):
    x = Inputs(9, 2, 4, 32, 16, dtype, device, layout=layout)
    for flags in ((True, False), (False, True)):
        torch.library.opcheck(torch.ops.gdn.fused_post_conv_prep.default, x.args(*flags))


def _layer_step(conv, a, b, A_log, dt_bias):
    q, k, v, g, beta = torch.ops.gdn.fused_post_conv_prep(conv, a, b, A_log, dt_bias, 2, 32, 16)
    return q, k, v, g, beta, (q.float() * 2).sum(-1) + g.exp().mean(-1, keepdim=True) * beta[:, :1]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=requires_gpu)])
@pytest.mark.parametrize("mode", [None, "reduce-overhead"])
def test_torch_compile_fullgraph(device, mode):
    if mode == "reduce-overhead" and device == "cpu":
        pytest.skip("reduce-overhead uses CUDA graphs")
    torch._dynamo.reset()
    compiled = torch.compile(_layer_step, fullgraph=True, mode=mode, dynamic=False)
    for L in (7, 7, 7):  # reduce-overhead records, then replays the graph
        x = Inputs(L, 2, 4, 32, 16, torch.bfloat16, device)
        args = x.args()[:5]
        got, want = compiled(*args), _layer_step(*args)
        for g_out, w_out in zip(got[:5], want[:5]):  # the op's outputs: identical
            torch.testing.assert_close(g_out, w_out, rtol=0, atol=0)
        torch.testing.assert_close(got[5], want[5])  # fused epilogue: rounding may differ


def _run_python(code, env_extra):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=TESTS,
                          env=subprocess_env(**env_extra), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


CHECK_OP = """
    import torch, gdn_ext
    from gdn_ext import _library
    from _helpers import Inputs, check_against_reference
    from _conv_helpers import ConvInputs, check_conv_against_reference
    print("compiled", _library.HAS_COMPILED_LIBRARY, "cuda", _library.HAS_CUDA_KERNEL)
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        x = Inputs(19, 2, 3, 32, 24, torch.bfloat16, device, layout="channel_first")
        check_against_reference(torch.ops.gdn.fused_post_conv_prep(*x.args()), x)
        c = ConvInputs([3, 1, 15], 2, 3, 32, 24, 4, torch.bfloat16, device)
        states = c.fresh_states()
        out = torch.ops.gdn.causal_conv1d_post_conv_prep(*c.args(states))
        check_conv_against_reference(out, states, c, c.conv_states)
        print("ok", device)
"""


def test_without_compiled_library_the_op_still_exists():
    """No library: the package declares the schema, the float64 reference
    serves CPU and Triton serves CUDA."""
    out = _run_python(CHECK_OP, {"GDN_EXT_DISABLE_LIBRARY": "1"})
    assert "compiled False cuda False" in out and "ok cpu" in out
    if HAS_GPU:
        assert "ok cuda" in out


BROKEN_LIBRARY_C = "extern void gdn_missing_symbol(void); void gdn_call(void) { gdn_missing_symbol(); }\n"


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler to build a broken library")
def test_a_library_that_cannot_load_warns_and_falls_back(tmp_path):
    """A wheel for another CUDA major version, or a broken file: import
    gdn_ext still works, warns once naming the file and the loader's error,
    and the op runs on the fallbacks."""
    garbage = tmp_path / "garbage.so"
    garbage.write_bytes(b"not an ELF file, and long enough that the loader reads its header" * 16)
    source = tmp_path / "undefined.c"
    source.write_text(BROKEN_LIBRARY_C)
    undefined = tmp_path / "undefined.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-Wl,-z,now", str(source), "-o", str(undefined)],
                   check=True)
    code = """
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import gdn_ext
    print("warnings", len(caught), caught[0].message if caught else "")
    """ + CHECK_OP
    for path, error in ((garbage, "invalid ELF header"), (undefined, "gdn_missing_symbol")):
        out = _run_python(code, {"GDN_EXT_LIBRARY": str(path)})
        assert "warnings 1 gdn_ext: the compiled library " + str(path) in out, out
        assert error in out and "compiled False cuda False" in out and "ok cpu" in out, out
        if HAS_GPU:
            assert "ok cuda" in out


def _cuda_toolchain_present():
    sys.path.insert(0, ROOT)
    try:
        from setup import find_cuda_home
    finally:
        sys.path.pop(0)
    return torch.version.cuda is not None and find_cuda_home() is not None


@pytest.mark.skipif(os.environ.get("GDN_EXT_CPU_ONLY") == "1", reason="GDN_EXT_CPU_ONLY=1")
def test_cuda_kernel_compiled_when_toolchain_present():
    """CI has nvcc and a CUDA torch but no GPU: the CUDA code must still have
    compiled and linked into the library."""
    if not _cuda_toolchain_present():
        pytest.skip("no CUDA toolkit or CPU-only torch: a CPU-only build is expected")
    assert _library.HAS_COMPILED_LIBRARY, "the compiled library did not load"
    assert _library.HAS_CUDA_KERNEL, "the library was built without its CUDA kernel"
    cuobjdump = shutil.which("cuobjdump") or os.path.join(
        os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "cuobjdump")
    if os.path.exists(cuobjdump):
        listing = subprocess.run([cuobjdump, "--list-elf", _library.LIBRARY_PATH],
                                 capture_output=True, text=True).stdout
        assert "sm_90" in listing or "sm_" in listing, listing


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_cmake_build_loads_and_runs(tmp_path):
    """CMakeLists.txt builds the same sources into a library that
    torch.ops.load_library loads (in a fresh process, as a C++ consumer's
    Python side would)."""
    build = os.environ.get("GDN_EXT_CMAKE_BUILD_DIR") or str(tmp_path / "build")
    prefix = torch.utils.cmake_prefix_path
    cuda = "ON" if _cuda_toolchain_present() else "OFF"
    # One target, this GPU's (or sm_90 without one): the build is what is
    # tested, and each target costs the whole CUDA compile again (minutes).
    env = dict(os.environ, TORCH_CUDA_ARCH_LIST=os.environ.get(
        "TORCH_CUDA_ARCH_LIST", "%d.%d" % torch.cuda.get_device_capability() if HAS_GPU else "9.0"))
    subprocess.run(["cmake", "-S", ROOT, "-B", build, f"-DCMAKE_PREFIX_PATH={prefix}",
                    f"-DGDN_EXT_WITH_CUDA={cuda}", "-DCMAKE_BUILD_TYPE=Release"],
                   check=True, capture_output=True, text=True, timeout=600, env=env)
    proc = subprocess.run(["cmake", "--build", build, "-j", str(os.cpu_count() or 2)],
                          capture_output=True, text=True, timeout=1200, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    libs = [f for f in os.listdir(build) if f.startswith("libgdn_ext") and f.endswith(".so")]
    assert libs, os.listdir(build)
    if shutil.which("nm"):
        assert torch_cxx_symbols_needed(os.path.join(build, libs[0])) == []
    out = _run_python(CHECK_OP, {"GDN_EXT_LIBRARY": os.path.join(build, libs[0])})
    assert f"compiled True cuda {cuda == 'ON'}" in out and "ok cpu" in out

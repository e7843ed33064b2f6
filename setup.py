"""Builds gdn_ext._C: the op's schema and CPU kernel always, the CUDA kernel
when a CUDA toolkit and a CUDA build of torch are both present.

    pip install .                             # in an isolated build environment
    pip install --no-build-isolation .        # against the installed torch (or -e .)

The library uses only PyTorch's stable ABI, targeting torch 2.10
(TORCH_TARGET_VERSION), so it loads on every torch from 2.10 on, whichever
torch it was built with.

Environment: CUDA_HOME (found automatically when unset), TORCH_CUDA_ARCH_LIST
(default with no GPU visible: 8.0;9.0;10.0+PTX), GDN_EXT_CPU_ONLY=1 to skip
CUDA, MAX_JOBS for parallel compilation.
"""
import glob
import os
import shutil
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ARCH_LIST = "8.0;9.0;10.0+PTX"
# The oldest torch the library loads on: its stable-ABI version, and the
# CPython that torch needs first (the wheel's limited-API tag).
TORCH_TARGET_VERSION = "0x020a000000000000"  # 2.10
OLDEST_TORCH = "2.10"
OLDEST_PYTHON = "cp310"


def log(msg):
    print(f"gdn_ext setup: {msg}", file=sys.stderr, flush=True)


def find_cuda_home():
    """CUDA_HOME, or the toolkit nvcc belongs to. The nvcc on PATH may be a
    wrapper script (/usr/local/bin/nvcc here), whose parent is no toolkit, so
    a candidate counts only if it holds bin/nvcc and include/cuda_runtime.h."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates += ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for home in candidates:
        if home and os.path.isfile(os.path.join(home, "bin", "nvcc")) and os.path.isfile(
            os.path.join(home, "include", "cuda_runtime.h")
        ):
            return home
    return None


def cuda_build_plan():
    """(use_cuda, reason). Sets CUDA_HOME before torch.utils.cpp_extension reads it."""
    import torch

    if os.environ.get("GDN_EXT_CPU_ONLY", "0") == "1":
        return False, "GDN_EXT_CPU_ONLY=1"
    if torch.version.cuda is None:
        return False, f"torch {torch.__version__} is not a CUDA build"
    home = find_cuda_home()
    if home is None:
        return False, "no CUDA toolkit found (set CUDA_HOME)"
    os.environ["CUDA_HOME"] = home
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCH_LIST
    arch = os.environ.get("TORCH_CUDA_ARCH_LIST") or "the visible GPUs' architectures"
    return True, f"nvcc in {home}, torch CUDA {torch.version.cuda}, arch list {arch}"


def loaded_libstdcxx():
    """The libstdc++ that this Python process (and so torch) runs with, or None.

    Linking it by path keeps it shared, and the same copy torch uses, even
    where the compiler only finds a static archive (the GPU image's
    CXX=/opt/gcc/bin/g++ wrapper does). A private static libstdc++ inside the
    extension has uninitialised locale facets, and formatting the first
    check's message segfaults; its exceptions would not be torch's either."""
    import torch  # noqa: F401 - loads libstdc++ if nothing has yet

    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if os.path.basename(path).startswith("libstdc++.so") and os.path.exists(path):
                    return path
    except OSError:
        pass
    return None


def extensions():
    use_cuda, reason = cuda_build_plan()
    # Imported only now: cpp_extension fixes CUDA_HOME when it is imported.
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    import torch

    log(f"torch {torch.__version__}, " + ("building with CUDA: " if use_cuda else "building CPU-only: ")
        + reason)
    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")) +
                     glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    # The library registers its op through STABLE_TORCH_LIBRARY and uses no
    # CPython API, so one build serves every CPython the supported torches
    # run on. USE_CUDA declares the CUDA shims (the current stream).
    stable = [f"-DTORCH_TARGET_VERSION={TORCH_TARGET_VERSION}"] + (["-DUSE_CUDA"] if use_cuda else [])
    extra = {"cxx": ["-O3"] + stable}
    libstdcxx = loaded_libstdcxx()
    kwargs = dict(name="gdn_ext._C", py_limited_api=True,
                  extra_link_args=[libstdcxx] if libstdcxx else [])
    if use_cuda:
        sources += sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
        # No --use_fast_math: the gate needs accurate expf/log1pf (SPEC.md).
        extra["nvcc"] = ["-O3", "-lineinfo"] + stable
        return [CUDAExtension(sources=sources, extra_compile_args=extra, **kwargs)]
    return [CppExtension(sources=sources, extra_compile_args=extra, **kwargs)]


def main():
    ext_modules = extensions()  # before anything imports torch.utils.cpp_extension
    from torch.utils.cpp_extension import BuildExtension

    setup(
        name="gdn_ext",
        version="0.2.0",
        description="Fused, exact post-convolution step of Gated DeltaNet layers",
        packages=find_packages(include=["gdn_ext", "gdn_ext.*"]),
        ext_modules=ext_modules,
        cmdclass={"build_ext": BuildExtension},
        options={"bdist_wheel": {"py_limited_api": OLDEST_PYTHON}},
        python_requires=">=3.10",
        install_requires=[f"torch>={OLDEST_TORCH}"],
    )


if __name__ == "__main__":
    main()

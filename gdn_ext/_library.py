"""Makes torch.ops.gdn.fused_post_conv_prep exist in every install.

* The compiled library (gdn_ext._C, or the file named by GDN_EXT_LIBRARY such
  as a CMake build) declares the schema and registers its CPU kernel and, when
  built with CUDA, its CUDA kernel.
* Where the library has no CUDA kernel, the Triton kernel is registered for
  CUDA.
* Where no library is present (or GDN_EXT_DISABLE_LIBRARY=1), the schema is
  declared here and the float64 reference serves CPU.
"""
import importlib.util
import os

import torch

NAMESPACE = "gdn"
NAME = "fused_post_conv_prep"
QUALNAME = f"{NAMESPACE}::{NAME}"
# Must equal the m.def() string in csrc/post_conv_prep.cpp;
# tests/test_registration.py compares the two.
SCHEMA = (
    "(Tensor conv_output, Tensor a, Tensor b, Tensor A_log, Tensor dt_bias, "
    "int num_k_heads, int head_k_dim, int head_v_dim, bool apply_l2norm=True, "
    "bool output_g_exp=False) -> (Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta)"
)


def _library_path():
    if os.environ.get("GDN_EXT_DISABLE_LIBRARY", "0") == "1":
        return None
    explicit = os.environ.get("GDN_EXT_LIBRARY")
    if explicit:
        return explicit
    spec = importlib.util.find_spec("gdn_ext._C")
    return spec.origin if spec is not None else None


def _has_kernel(key):
    return torch._C._dispatch_has_kernel_for_dispatch_key(QUALNAME, key)


LIBRARY_PATH = _library_path()
if LIBRARY_PATH is not None:
    torch.ops.load_library(LIBRARY_PATH)

#: True when the compiled library is loaded (its CPU kernel is the "cpu" backend).
HAS_COMPILED_LIBRARY = LIBRARY_PATH is not None
#: True when the compiled library carries the handwritten CUDA kernel.
HAS_CUDA_KERNEL = HAS_COMPILED_LIBRARY and _has_kernel("CUDA")

_fallbacks = []  # keeps the Python registrations alive
if not HAS_COMPILED_LIBRARY:
    _lib = torch.library.Library(NAMESPACE, "DEF")
    _lib.define(NAME + SCHEMA)
    _fallbacks.append(_lib)

_impl = torch.library.Library(NAMESPACE, "IMPL")
_fallbacks.append(_impl)
if not _has_kernel("CPU"):
    from .reference import reference_backend

    _impl.impl(NAME, reference_backend, "CPU")

try:
    from .triton_kernel import post_conv_prep_triton

    TRITON_ERROR = None
except Exception as exc:  # noqa: BLE001 - any import failure means no Triton
    post_conv_prep_triton = None
    TRITON_ERROR = f"{type(exc).__name__}: {exc}"

if not HAS_CUDA_KERNEL and post_conv_prep_triton is not None:
    _impl.impl(NAME, post_conv_prep_triton, "CUDA")

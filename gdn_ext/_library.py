"""Makes the ops (torch.ops.gdn.fused_post_conv_prep, op 2
torch.ops.gdn.causal_conv1d_post_conv_prep, and their .out variants) exist in
every install.

* The compiled library (gdn_ext._C, or the file named by GDN_EXT_LIBRARY such
  as a CMake build) declares the schemas and registers its CPU kernel and,
  when built with CUDA, its CUDA kernel. It uses only torch's stable ABI, so
  it loads on every torch from 2.10 on.
* Where the library has no CUDA kernel, the Triton kernel is registered for
  CUDA.
* Where no library is present, it cannot be loaded (a wheel for another CUDA
  major version, a broken file: a warning names the file and the loader's
  error), or GDN_EXT_DISABLE_LIBRARY=1, the schemas are declared here and the
  float64 reference serves CPU.
"""
import importlib.util
import os
import warnings

import torch

from ._checks import check_args, check_outputs
from ._conv_checks import OP as CONV_OP
from ._conv_checks import check_conv_args

NAMESPACE = "gdn"
NAME = "fused_post_conv_prep"
OUT_OVERLOAD = "out"
QUALNAME = f"{NAMESPACE}::{NAME}"
_ARGS = ("Tensor conv_output, Tensor a, Tensor b, Tensor A_log, Tensor dt_bias, "
         "int num_k_heads, int head_k_dim, int head_v_dim, bool apply_l2norm=True, "
         "bool output_g_exp=False")
# Must equal the m.def() strings in csrc/post_conv_prep.cpp;
# tests/test_registration.py compares them.
SCHEMA = f"({_ARGS}) -> (Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta)"
# The .out variant returns nothing: torch.compile functionalizes a custom op's
# mutations, but not outputs that alias its inputs.
OUT_SCHEMA = (f"({_ARGS}, *, Tensor(a!) q, Tensor(b!) k, Tensor(c!) v, Tensor(d!) g, "
              "Tensor(e!) beta) -> ()")

# Op 2: the causal conv (+ SiLU) and op 1 in one pass, with the conv-state cache.
CONV_NAME = "causal_conv1d_post_conv_prep"
CONV_QUALNAME = f"{NAMESPACE}::{CONV_NAME}"
_CONV_ARGS = ("Tensor x, Tensor conv_weight, Tensor? conv_bias, Tensor(s!) conv_states, "
              "Tensor query_start_loc, Tensor? cache_indices, Tensor? has_initial_state, "
              "Tensor a, Tensor b, Tensor A_log, Tensor dt_bias, int num_k_heads, "
              "int head_k_dim, int head_v_dim, bool apply_l2norm=True, bool output_g_exp=False, "
              "bool silu=True, int pad_slot_id=-1")
CONV_SCHEMA = f"({_CONV_ARGS}) -> (Tensor q, Tensor k, Tensor v, Tensor g, Tensor beta)"
CONV_OUT_SCHEMA = (f"({_CONV_ARGS}, *, Tensor(a!) q, Tensor(b!) k, Tensor(c!) v, "
                   "Tensor(d!) g, Tensor(e!) beta) -> ()")
#: (name, schema) of every overload this file declares where no library does.
SCHEMAS = ((NAME, SCHEMA), (f"{NAME}.{OUT_OVERLOAD}", OUT_SCHEMA),
           (CONV_NAME, CONV_SCHEMA), (f"{CONV_NAME}.{OUT_OVERLOAD}", CONV_OUT_SCHEMA))


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


def _load(path):
    """Loads the library; None on success, else the loader's error (warned once)."""
    try:
        torch.ops.load_library(path)
    except (OSError, RuntimeError) as exc:
        # torch.ops.load_library re-raises the loader's error (dlopen's
        # message: the missing symbol, the bad header) as its cause.
        cause = exc.__cause__ or exc.__context__
        error = f"{type(exc).__name__}: {exc}" + (f" ({cause})" if cause else "")
        warnings.warn(f"gdn_ext: the compiled library {path} could not be loaded ({error}); "
                      "using the Triton kernel for CUDA and the float64 reference for CPU",
                      RuntimeWarning, stacklevel=3)
        return error
    return None


LIBRARY_PATH = _library_path()
#: Why the compiled library is not in use (None when it is, or when there is none).
LIBRARY_ERROR = _load(LIBRARY_PATH) if LIBRARY_PATH is not None else None
#: True when the compiled library is loaded (its CPU kernel is the "cpu" backend).
HAS_COMPILED_LIBRARY = LIBRARY_PATH is not None and LIBRARY_ERROR is None
#: True when the compiled library carries the handwritten CUDA kernel.
HAS_CUDA_KERNEL = HAS_COMPILED_LIBRARY and _has_kernel("CUDA")

_fallbacks = []  # keeps the Python registrations alive
if not HAS_COMPILED_LIBRARY:
    _lib = torch.library.Library(NAMESPACE, "DEF")
    for _name, _schema in SCHEMAS:
        _lib.define(_name + _schema)
    _fallbacks.append(_lib)


def out_variant(functional):
    """The .out implementation of op 1's functional backend: its outputs,
    copied into the given tensors (any strides)."""
    def impl(*args, q, k, v, g, beta):
        out = (q, k, v, g, beta)
        check_args(*args[:8])
        check_outputs(args[0], args[3], *args[5:8], out)
        for dst, src in zip(out, functional(*args)):
            dst.copy_(src)
    return impl


def conv_out_variant(functional):
    """The same for op 2 (whose functional backend updates conv_states)."""
    def impl(*args, q, k, v, g, beta):
        out = (q, k, v, g, beta)
        check_conv_args(*args[:14])
        check_outputs(args[0], args[9], *args[11:14], out, op=CONV_OP, input_name="x")
        for dst, src in zip(out, functional(*args)):
            dst.copy_(src)
    return impl


_impl = torch.library.Library(NAMESPACE, "IMPL")
_fallbacks.append(_impl)
if not _has_kernel("CPU"):
    from .reference import reference_backend, reference_conv_backend

    _impl.impl(NAME, reference_backend, "CPU")
    _impl.impl(f"{NAME}.{OUT_OVERLOAD}", out_variant(reference_backend), "CPU")
    _impl.impl(CONV_NAME, reference_conv_backend, "CPU")
    _impl.impl(f"{CONV_NAME}.{OUT_OVERLOAD}", conv_out_variant(reference_conv_backend), "CPU")

try:
    from .triton_conv_kernel import causal_conv1d_post_conv_prep_triton
    from .triton_kernel import post_conv_prep_triton

    TRITON_ERROR = None
except Exception as exc:  # noqa: BLE001 - any import failure means no Triton
    post_conv_prep_triton = causal_conv1d_post_conv_prep_triton = None
    TRITON_ERROR = f"{type(exc).__name__}: {exc}"

if not HAS_CUDA_KERNEL and post_conv_prep_triton is not None:
    _impl.impl(NAME, post_conv_prep_triton, "CUDA")
    _impl.impl(f"{NAME}.{OUT_OVERLOAD}", out_variant(post_conv_prep_triton), "CUDA")
    _impl.impl(CONV_NAME, causal_conv1d_post_conv_prep_triton, "CUDA")
    _impl.impl(f"{CONV_NAME}.{OUT_OVERLOAD}",
               conv_out_variant(causal_conv1d_post_conv_prep_triton), "CUDA")

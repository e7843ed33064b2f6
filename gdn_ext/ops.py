"""The Python API of the op: a wrapper with a backend switch and `out=`, and
the fake (meta) implementations that let torch.compile(fullgraph=True) trace
the op and its .out variant."""
import os

import torch

from . import _library
from ._checks import OUTPUT_NAMES, check_args, check_outputs, empty_outputs
from .reference import reference_backend

BACKENDS = ("auto", "cuda", "triton", "cpu", "reference")


@torch.library.register_fake(_library.QUALNAME)
def _fake(conv_output, a, b, A_log, dt_bias, num_k_heads, head_k_dim, head_v_dim,
          apply_l2norm=True, output_g_exp=False):
    L, HV = check_args(conv_output, a, b, A_log, dt_bias, num_k_heads, head_k_dim, head_v_dim)
    return empty_outputs(conv_output, L, num_k_heads, HV, head_k_dim, head_v_dim)


@torch.library.register_fake(f"{_library.QUALNAME}.{_library.OUT_OVERLOAD}")
def _fake_out(conv_output, a, b, A_log, dt_bias, num_k_heads, head_k_dim, head_v_dim,
              apply_l2norm=True, output_g_exp=False, *, q, k, v, g, beta):
    check_args(conv_output, a, b, A_log, dt_bias, num_k_heads, head_k_dim, head_v_dim)
    check_outputs(conv_output, A_log, num_k_heads, head_k_dim, head_v_dim, (q, k, v, g, beta))


def _no_library():
    return ("is not available: the compiled gdn_ext library is not present"
            + (f" ({_library.LIBRARY_ERROR})" if _library.LIBRARY_ERROR else ""))


def backend_unavailable_reason(backend, device, input_name="conv_output"):
    """None when `backend` can run on tensors of `device` here, else why not
    (input_name: the op's activation input, as the message names it)."""
    device = torch.device(device)
    if backend not in BACKENDS:
        return f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}"
    if backend == "cuda":
        if not _library.HAS_CUDA_KERNEL:
            return ("backend 'cuda' is not available: gdn_ext was built without its CUDA kernel"
                    if _library.HAS_COMPILED_LIBRARY else f"backend 'cuda' {_no_library()}")
        if not torch.cuda.is_available():
            return "backend 'cuda' is not available: no CUDA device is visible"
        if device.type != "cuda":
            return f"backend 'cuda' needs CUDA tensors, but {input_name} is on {device}"
    elif backend == "cpu":
        if not _library.HAS_COMPILED_LIBRARY:
            return f"backend 'cpu' {_no_library()}"
        if device.type != "cpu":
            return f"backend 'cpu' needs CPU tensors, but {input_name} is on {device}"
    elif backend == "triton":
        if _library.post_conv_prep_triton is None:
            return f"backend 'triton' is not available: triton failed to import ({_library.TRITON_ERROR})"
        if device.type == "cpu" and os.environ.get("TRITON_INTERPRET", "0") != "1":
            return "backend 'triton' runs on CPU tensors only with TRITON_INTERPRET=1"
        if device.type == "cuda" and not torch.cuda.is_available():
            return "backend 'triton' is not available: no CUDA device is visible"
        if device.type not in ("cuda", "cpu"):
            return f"backend 'triton' needs CUDA tensors, but {input_name} is on {device}"
    return None


def available_backends(device):
    """The backends that can run on tensors of `device` in this install."""
    return [b for b in BACKENDS[1:] if backend_unavailable_reason(b, device) is None]


def fused_post_conv_prep(conv_output, a, b, A_log, dt_bias, num_k_heads, head_k_dim,
                         head_v_dim, apply_l2norm=True, output_g_exp=False, *, backend="auto",
                         out=None):
    """Split a GDN layer's conv output into per-head q, k, v and compute g, beta.

    Args:
        conv_output: [L, 2*H*K + HV*V], bfloat16/float16/float32, any strides.
        a, b: [L, HV]. A_log, dt_bias: [HV].
        num_k_heads, head_k_dim, head_v_dim: H, K, V.
        apply_l2norm: L2-normalise q and k (x * rsqrt(sum(x^2) + 1e-6)).
        output_g_exp: return exp(g) instead of g.
        backend: "auto" (the registered kernel for the tensors' device),
            "cuda", "triton", "cpu" or "reference" (float64, rounded once).
        out: optional (q, k, v, g, beta) tensors to write into, of the shapes
            and dtypes below and any strides (a serving engine's reused
            buffers); they are returned. Saves the five allocations.

    Returns:
        q, k: [L, H, K]; v: [L, HV, V] in conv_output's dtype; g, beta: [L, HV]
        float32, where g = -exp(A_log) * softplus(a + dt_bias), beta = sigmoid(b).
    """
    args = (conv_output, a, b, A_log, dt_bias, num_k_heads, head_k_dim, head_v_dim,
            apply_l2norm, output_g_exp)
    if backend != "auto":
        reason = backend_unavailable_reason(backend, conv_output.device)
        if reason is not None:
            raise ValueError(_library.QUALNAME + ": " + reason)
    if out is not None:
        if not isinstance(out, (tuple, list)) or len(out) != len(OUTPUT_NAMES):
            raise ValueError(_library.QUALNAME + ": out must be a tuple of five tensors "
                             "(q, k, v, g, beta)")
        out = dict(zip(OUTPUT_NAMES, out))
    if backend in ("auto", "cuda", "cpu"):
        if out is None:
            return torch.ops.gdn.fused_post_conv_prep.default(*args)
        torch.ops.gdn.fused_post_conv_prep.out(*args, **out)
    else:
        functional = _library.post_conv_prep_triton if backend == "triton" else reference_backend
        if out is None:
            return functional(*args)
        _library.out_variant(functional)(*args, **out)
    return tuple(out.values())

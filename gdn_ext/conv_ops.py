"""The Python API of op 2, torch.ops.gdn.causal_conv1d_post_conv_prep: a
wrapper with vLLM's argument names, a backend switch, `validate=` and `out=`,
and the fake implementations that let torch.compile trace the op."""
import torch

from . import _library
from ._checks import OUTPUT_NAMES, check_outputs, empty_outputs
from ._conv_checks import OP, check_conv_args, validate_sequences
from .ops import backend_unavailable_reason
from .reference import reference_conv_backend

ACTIVATIONS = {"silu": True, "swish": True, None: False}


@torch.library.register_fake(_library.CONV_QUALNAME)
def _fake(x, conv_weight, conv_bias, conv_states, query_start_loc, cache_indices,
          has_initial_state, a, b, A_log, dt_bias, num_k_heads, head_k_dim, head_v_dim,
          apply_l2norm=True, output_g_exp=False, silu=True, pad_slot_id=-1):
    sizes = check_conv_args(x, conv_weight, conv_bias, conv_states, query_start_loc,
                            cache_indices, has_initial_state, a, b, A_log, dt_bias, num_k_heads,
                            head_k_dim, head_v_dim)
    return empty_outputs(x, sizes.T, num_k_heads, sizes.HV, head_k_dim, head_v_dim)


@torch.library.register_fake(f"{_library.CONV_QUALNAME}.{_library.OUT_OVERLOAD}")
def _fake_out(x, conv_weight, conv_bias, conv_states, query_start_loc, cache_indices,
              has_initial_state, a, b, A_log, dt_bias, num_k_heads, head_k_dim, head_v_dim,
              apply_l2norm=True, output_g_exp=False, silu=True, pad_slot_id=-1, *, q, k, v, g,
              beta):
    check_conv_args(x, conv_weight, conv_bias, conv_states, query_start_loc, cache_indices,
                    has_initial_state, a, b, A_log, dt_bias, num_k_heads, head_k_dim, head_v_dim)
    check_outputs(x, A_log, num_k_heads, head_k_dim, head_v_dim, (q, k, v, g, beta), op=OP,
                  input_name="x")


def causal_conv1d_post_conv_prep(x, conv_weight, conv_bias, conv_states, query_start_loc,
                                 cache_indices, has_initial_state, a, b, A_log, dt_bias,
                                 num_k_heads, head_k_dim, head_v_dim, apply_l2norm=True,
                                 output_g_exp=False, activation="silu", pad_slot_id=-1, *,
                                 backend="auto", validate=False, out=None):
    """The causal depthwise conv (+ SiLU) of a GDN layer and the post-conv
    step (op 1) in one pass, updating each sequence's conv-state cache line.

    Args:
        x: [T, D] the conv's input (mixed_qkv), the tokens of all sequences
            back to back; D = 2*H*K + HV*V; any strides.
        conv_weight: [D, W], 2 <= W <= 4 (conv1d's [D, 1, W] weight viewed).
        conv_bias: [D] or None.
        conv_states: [N, D, W-1] cache lines in x's dtype, any strides (a
            transposed view of [N, W-1, D] too); read as each sequence's prior
            inputs and overwritten with its last W-1 inputs.
        query_start_loc: [B+1] int32; sequence i is x[qsl[i] : qsl[i+1]].
        cache_indices: [B] int32, sequence i's cache line (None: line i).
            Lines equal to pad_slot_id or outside [0, N) read zeros and are
            not written.
        has_initial_state: [B] bool, whether sequence i continues from its
            line (None: no sequence does).
        a, b: [T, HV]; A_log, dt_bias: [HV]; num_k_heads, head_k_dim,
            head_v_dim, apply_l2norm, output_g_exp: as fused_post_conv_prep.
        activation: "silu" (or "swish") after the conv, or None.
        backend: "auto", "cuda", "triton", "cpu" or "reference".
        validate: check query_start_loc and cache_indices on the host first
            (one synchronisation; a ValueError names what is wrong).
        out: optional (q, k, v, g, beta) tensors to write into.

    Returns:
        q, k [T, H, K], v [T, HV, V] in x's dtype; g, beta [T, HV] float32:
        fused_post_conv_prep applied to the conv output rounded to x's dtype.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"{OP}activation must be 'silu', 'swish' or None, but got "
                         f"{activation!r}")
    args = (x, conv_weight, conv_bias, conv_states, query_start_loc, cache_indices,
            has_initial_state, a, b, A_log, dt_bias, num_k_heads, head_k_dim, head_v_dim,
            apply_l2norm, output_g_exp, ACTIVATIONS[activation], pad_slot_id)
    if backend != "auto":
        reason = backend_unavailable_reason(backend, x.device, "x")
        if reason is not None:
            raise ValueError(_library.CONV_QUALNAME + ": " + reason)
    if validate:
        check_conv_args(*args[:14])
        validate_sequences(x, conv_states, query_start_loc, cache_indices, pad_slot_id)
    if out is not None:
        if not isinstance(out, (tuple, list)) or len(out) != len(OUTPUT_NAMES):
            raise ValueError(OP + "out must be a tuple of five tensors (q, k, v, g, beta)")
        out = dict(zip(OUTPUT_NAMES, out))
    if backend in ("auto", "cuda", "cpu"):
        op = torch.ops.gdn.causal_conv1d_post_conv_prep
        if out is None:
            return op.default(*args)
        op.out(*args, **out)
    else:
        functional = (_library.causal_conv1d_post_conv_prep_triton if backend == "triton"
                      else reference_conv_backend)
        if out is None:
            return functional(*args)
        _library.conv_out_variant(functional)(*args, **out)
    return tuple(out.values())

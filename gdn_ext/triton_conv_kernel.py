"""Op 2 (causal conv + SiLU + op 1) as Triton kernels: the CUDA implementation
when the library was built without CUDA, and the CUDA kernel's oracle in the
tests. Under TRITON_INTERPRET=1 it runs on CPU tensors.

Two launches, in stream order: the first computes q, k, v, g and beta (one
program per BLOCK_T tokens of one unit: a q or k head, a v head, or the
gates), reading each token's prior inputs from x or from its sequence's
cache line; the second writes each sequence's new cache line, once every
read of the old one is done.
"""
import contextlib

import torch
import triton
import triton.language as tl

from ._conv_checks import check_conv_args
from ._checks import empty_outputs
from .triton_kernel import INTERPRET, _cast_to, _exp, _store_gates


@triton.jit
def _sequence_of(tokens, qsl, B, SEARCH_STEPS: tl.constexpr):
    """For each token, the sequence i with qsl[i] <= token < qsl[i+1]
    (a binary search over the B+1 bounds, unrolled: SEARCH_STEPS is the bit
    length of B, so one compiled kernel serves every B of that length)."""
    lo = tl.zeros_like(tokens)
    hi = tl.zeros_like(tokens) + B
    for _ in tl.static_range(SEARCH_STEPS):
        mid = (lo + hi) // 2
        below = tl.load(qsl + mid).to(tl.int64) <= tokens
        lo = tl.where(below, mid, lo)
        hi = tl.where(below, hi, mid)
    return lo


@triton.jit
def _conv_prep_kernel(
    x, stride_x0, stride_x1, w, stride_w0, stride_w1, bias,
    states, stride_s0, stride_s1, stride_s2, qsl, cache_indices, has_initial_state,
    a, stride_a0, stride_a1, b, stride_b0, stride_b1,
    A_log, stride_A, dt_bias, stride_dt,
    q, k, v, g, beta,
    T, H, HV, K, V, B, N, pad_slot_id, SEARCH_STEPS: tl.constexpr,
    W: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_INDICES: tl.constexpr,
    HAS_INITIAL: tl.constexpr, SILU: tl.constexpr,
    APPLY_L2NORM: tl.constexpr, OUTPUT_G_EXP: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_F: tl.constexpr, BLOCK_HV: tl.constexpr,
):
    unit = tl.program_id(1)
    tokens = tl.program_id(0).to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T).to(tl.int64)
    token_ok = tokens < T
    if unit < 2 * H + HV:
        is_qk = unit < 2 * H
        width = tl.where(is_qk, K, V)
        col0 = tl.where(is_qk, unit * K, 2 * H * K + (unit - 2 * H) * V).to(tl.int64)
        f = tl.arange(0, BLOCK_F)
        f_ok = f < width
        feats = col0 + f
        mask = token_ok[:, None] & f_ok[None, :]

        seq = _sequence_of(tokens, qsl, B, SEARCH_STEPS)
        # Clamped into [0, token]: bounds that are not what SPEC asks for give
        # wrong values, never an access out of bounds.
        start = tl.minimum(tl.maximum(tl.load(qsl + seq).to(tl.int64), 0), tokens)
        if HAS_INDICES:
            line = tl.load(cache_indices + seq).to(tl.int64)
        else:
            line = seq
        if HAS_INITIAL:
            initial = tl.load(has_initial_state + seq).to(tl.int1)
        else:
            initial = tl.zeros_like(tokens) != 0
        prior_ok = initial & (line != pad_slot_id) & (line >= 0) & (line < N)

        acc = tl.zeros((BLOCK_T, BLOCK_F), dtype=tl.float32)
        if HAS_BIAS:
            acc += tl.load(bias + feats, mask=f_ok, other=0.0).to(tl.float32)[None, :]
        for j in tl.static_range(W):
            pos = tokens - (W - 1) + j
            in_x = pos >= start
            xv = tl.load(x + pos[:, None] * stride_x0 + feats[None, :] * stride_x1,
                         mask=mask & in_x[:, None], other=0.0)
            column = pos - start + (W - 1)
            sv = tl.load(states + line[:, None] * stride_s0 + feats[None, :] * stride_s1
                         + column[:, None] * stride_s2,
                         mask=mask & (~in_x & prior_ok)[:, None], other=0.0)
            tap = tl.where(in_x[:, None], xv, sv).to(tl.float32)
            wj = tl.load(w + feats * stride_w0 + j * stride_w1, mask=f_ok, other=0.0)
            acc += wj.to(tl.float32)[None, :] * tap
        if SILU:
            acc = acc / (1.0 + _exp(-acc))
        y = _cast_to(acc, x)  # the conv output an unfused layer stores
        if is_qk:
            head = y
            if APPLY_L2NORM:
                hf = y.to(tl.float32)
                scale = tl.math.rsqrt(tl.sum(hf * hf, axis=1) + 1e-6)
                head = hf * scale[:, None]
            if unit < H:
                dst = q + (tokens * H + unit)[:, None] * K + f[None, :]
            else:
                dst = k + (tokens * H + (unit - H))[:, None] * K + f[None, :]
            tl.store(dst, _cast_to(head, dst), mask=mask)
        else:
            tl.store(v + (tokens * HV + (unit - 2 * H))[:, None] * V + f[None, :], y, mask=mask)
    else:
        _store_gates(tokens, token_ok, a, stride_a0, stride_a1, b, stride_b0, stride_b1, A_log,
                     stride_A, dt_bias, stride_dt, g, beta, HV, OUTPUT_G_EXP, BLOCK_HV)


@triton.jit
def _conv_state_kernel(
    x, stride_x0, stride_x1, states, stride_s0, stride_s1, stride_s2,
    qsl, cache_indices, has_initial_state, T, D, N, pad_slot_id,
    W: tl.constexpr, HAS_INDICES: tl.constexpr, HAS_INITIAL: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    seq = tl.program_id(0)
    feats = tl.program_id(1).to(tl.int64) * BLOCK_D + tl.arange(0, BLOCK_D)
    f_ok = feats < D
    start = tl.minimum(tl.maximum(tl.load(qsl + seq).to(tl.int64), 0), T)
    end = tl.minimum(tl.maximum(tl.load(qsl + seq + 1).to(tl.int64), start), T)
    if HAS_INDICES:
        line = tl.load(cache_indices + seq).to(tl.int64)
    else:
        line = seq.to(tl.int64)
    if HAS_INITIAL:
        initial = tl.load(has_initial_state + seq).to(tl.int32)
    else:
        initial = 0
    n = end - start
    if (n > 0) & (line != pad_slot_id) & (line >= 0) & (line < N):
        base = states + line * stride_s0 + feats * stride_s1
        # The new line is the last W-1 columns of [old line | the sequence's
        # x]. Column c takes old column c + n (when not from x): a column to
        # its right, written later, so the line is updated in place in order.
        for c in tl.static_range(W - 1):
            pos = end - (W - 1) + c
            # Masks as vectors: the interpreter rejects a scalar in one.
            in_x = (feats * 0 + pos) >= start
            xv = tl.load(x + pos * stride_x0 + feats * stride_x1, mask=f_ok & in_x, other=0.0)
            old = tl.load(base + (c + n) * stride_s2,
                          mask=f_ok & ~in_x & ((feats * 0 + initial) != 0), other=0.0)
            tl.store(base + c * stride_s2, tl.where(in_x, xv, old), mask=f_ok)


def _block_tokens(T, block_width):
    """Tokens a program takes. On a GPU the same number at every T: tl.sum
    associates a row's squares by the tile's layout, which follows its
    height, so a tile sized to T gave a q/k head of a sequence prefilled in
    two calls other bits (1 ulp, now and then) than one call gives. The
    interpreter sums a row in the same order at any height, so there the
    tile shrinks to T, which keeps the CPU tests' small calls cheap."""
    if INTERPRET:
        return max(1, min(triton.next_power_of_2(T), (1 << 14) // block_width))
    return max(1, (1 << 12) // block_width)


def causal_conv1d_post_conv_prep_triton(x, conv_weight, conv_bias, conv_states, query_start_loc,
                                        cache_indices, has_initial_state, a, b, A_log, dt_bias,
                                        num_k_heads, head_k_dim, head_v_dim, apply_l2norm=True,
                                        output_g_exp=False, silu=True, pad_slot_id=-1):
    """Runs the Triton kernels; same arguments and results as the op."""
    sizes = check_conv_args(x, conv_weight, conv_bias, conv_states, query_start_loc,
                            cache_indices, has_initial_state, a, b, A_log, dt_bias, num_k_heads,
                            head_k_dim, head_v_dim)
    T, HV, W, B, N = sizes.T, sizes.HV, sizes.W, sizes.B, sizes.N
    H, K, V = num_k_heads, head_k_dim, head_v_dim
    outputs = empty_outputs(x, T, H, HV, K, V)
    if T == 0:
        return outputs
    q, k, v, g, beta = outputs
    block_f = triton.next_power_of_2(max(K, V))
    block_hv = triton.next_power_of_2(HV)
    block_t = _block_tokens(T, max(block_f, block_hv))
    search_steps = max(1, (B).bit_length())
    # Stand-ins for absent optional tensors (never read: the flags say so).
    indices = cache_indices if cache_indices is not None else query_start_loc
    initial = has_initial_state if has_initial_state is not None else query_start_loc
    bias = conv_bias if conv_bias is not None else conv_weight
    with torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext():
        _conv_prep_kernel[(triton.cdiv(T, block_t), 2 * H + HV + 1)](
            x, x.stride(0), x.stride(1), conv_weight, conv_weight.stride(0),
            conv_weight.stride(1), bias,
            conv_states, conv_states.stride(0), conv_states.stride(1), conv_states.stride(2),
            query_start_loc, indices, initial,
            a, a.stride(0), a.stride(1), b, b.stride(0), b.stride(1),
            A_log, A_log.stride(0), dt_bias, dt_bias.stride(0),
            q, k, v, g, beta,
            T, H, HV, K, V, B, N, pad_slot_id, SEARCH_STEPS=search_steps,
            W=W, HAS_BIAS=conv_bias is not None, HAS_INDICES=cache_indices is not None,
            HAS_INITIAL=has_initial_state is not None, SILU=silu,
            APPLY_L2NORM=apply_l2norm, OUTPUT_G_EXP=output_g_exp,
            BLOCK_T=block_t, BLOCK_F=block_f, BLOCK_HV=block_hv,
        )
        block_d = 1024
        _conv_state_kernel[(B, triton.cdiv(sizes.D, block_d))](
            x, x.stride(0), x.stride(1),
            conv_states, conv_states.stride(0), conv_states.stride(1), conv_states.stride(2),
            query_start_loc, indices, initial, T, sizes.D, N, pad_slot_id,
            W=W, HAS_INDICES=cache_indices is not None,
            HAS_INITIAL=has_initial_state is not None, BLOCK_D=block_d,
        )
    return outputs

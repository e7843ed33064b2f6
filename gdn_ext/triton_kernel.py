"""The op as a Triton kernel: the CUDA implementation when the library was
built without CUDA, and the CUDA kernel's oracle in the tests. Under
TRITON_INTERPRET=1 it runs on CPU tensors.

One program handles BLOCK_L rows of one unit: a q or k head (L2-normalised),
a v head (copied), or the gates of all value heads. Strides are arbitrary and
row offsets are int64.
"""
import contextlib
import os

import torch
import triton
import triton.language as tl

from ._checks import check_args, empty_outputs

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

if INTERPRET:
    # The interpreter evaluates tl.exp / tl.log with numpy in float32, which
    # is accurate; it does not implement libdevice.
    @triton.jit
    def _exp(x):
        return tl.exp(x)

    @triton.jit
    def _log1p(y):
        # Kahan: log(1 + y) * y / ((1 + y) - 1) cancels the rounding of 1 + y.
        u = 1.0 + y
        exact = u == 1.0
        return tl.where(exact, y, tl.log(u) * (y / tl.where(exact, 1.0, u - 1.0)))

    @triton.jit
    def _cast_to(x, out_ptr):
        # The interpreter truncates float32 -> bfloat16 (and its "rtne" mode
        # drops the carry into the exponent): round to nearest even on the bits.
        if out_ptr.dtype.element_ty == tl.bfloat16 and x.dtype == tl.float32:
            bits = x.to(tl.uint32, bitcast=True)
            bits = bits + 0x7FFF + ((bits >> 16) & 1)
            rounded = (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
            return tl.where(x != x, x.to(tl.bfloat16), rounded)
        else:
            return x.to(out_ptr.dtype.element_ty)
else:
    from triton.language.extra import libdevice

    # tl.exp lowers to ex2.approx on the GPU: up to ~5e-6 relative error at
    # |x| = 80, over SPEC's 1e-6 bound for g. libdevice's are accurate.
    @triton.jit
    def _exp(x):
        return libdevice.exp(x)

    @triton.jit
    def _log1p(y):
        return libdevice.log1p(y)

    @triton.jit
    def _cast_to(x, out_ptr):
        return x.to(out_ptr.dtype.element_ty)


@triton.jit
def _post_conv_prep_kernel(
    conv, stride_row, stride_feat,
    a, stride_a0, stride_a1, b, stride_b0, stride_b1,
    A_log, stride_A, dt_bias, stride_dt,
    q, k, v, g, beta,
    L, H, HV, K, V,
    APPLY_L2NORM: tl.constexpr, OUTPUT_G_EXP: tl.constexpr,
    BLOCK_L: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_V: tl.constexpr,
    BLOCK_HV: tl.constexpr,
):
    unit = tl.program_id(1)
    rows = tl.program_id(0).to(tl.int64) * BLOCK_L + tl.arange(0, BLOCK_L).to(tl.int64)
    row_ok = rows < L
    src_rows = conv + rows[:, None] * stride_row
    # Each branch names its own values: the compiler wants a variable bound
    # in several branches to have one type.
    if unit < 2 * H:
        kc = tl.arange(0, BLOCK_K)
        k_mask = row_ok[:, None] & (kc[None, :] < K)
        head = tl.load(src_rows + (unit * K + kc[None, :]).to(tl.int64) * stride_feat,
                       mask=k_mask, other=0.0)
        if APPLY_L2NORM:
            hf = head.to(tl.float32)
            scale = tl.math.rsqrt(tl.sum(hf * hf, axis=1) + 1e-6)
            head = hf * scale[:, None]
        if unit < H:
            dst = q + (rows * H + unit)[:, None] * K + kc[None, :]
        else:
            dst = k + (rows * H + (unit - H))[:, None] * K + kc[None, :]
        tl.store(dst, _cast_to(head, dst), mask=k_mask)
    elif unit < 2 * H + HV:
        v_head = unit - 2 * H
        vc = tl.arange(0, BLOCK_V)
        v_mask = row_ok[:, None] & (vc[None, :] < V)
        col0 = 2 * H * K + v_head * V
        vals = tl.load(src_rows + (col0 + vc[None, :]).to(tl.int64) * stride_feat, mask=v_mask)
        tl.store(v + (rows * HV + v_head)[:, None] * V + vc[None, :], vals, mask=v_mask)
    else:
        _store_gates(rows, row_ok, a, stride_a0, stride_a1, b, stride_b0, stride_b1, A_log,
                     stride_A, dt_bias, stride_dt, g, beta, HV, OUTPUT_G_EXP, BLOCK_HV)


@triton.jit
def _store_gates(rows, row_ok, a, stride_a0, stride_a1, b, stride_b0, stride_b1, A_log, stride_A,
                 dt_bias, stride_dt, g, beta, HV, OUTPUT_G_EXP: tl.constexpr,
                 BLOCK_HV: tl.constexpr):
    """g and beta of the given rows, every value head (both ops' kernels)."""
    hv = tl.arange(0, BLOCK_HV)
    g_mask = row_ok[:, None] & (hv[None, :] < HV)
    head_ok = hv < HV
    x = (tl.load(a + rows[:, None] * stride_a0 + hv[None, :] * stride_a1, mask=g_mask,
                 other=0.0).to(tl.float32)
         + tl.load(dt_bias + hv * stride_dt, mask=head_ok, other=0.0).to(tl.float32)[None, :])
    A = tl.load(A_log + hv * stride_A, mask=head_ok, other=0.0).to(tl.float32)
    softplus = tl.where(x > 20.0, x, tl.maximum(x, 0.0) + _log1p(_exp(-tl.abs(x))))
    gate = -_exp(A)[None, :] * softplus
    if OUTPUT_G_EXP:
        gate = _exp(gate)
    bv = tl.load(b + rows[:, None] * stride_b0 + hv[None, :] * stride_b1, mask=g_mask,
                 other=0.0).to(tl.float32)
    out = rows[:, None] * HV + hv[None, :]
    tl.store(g + out, gate, mask=g_mask)
    tl.store(beta + out, 1.0 / (1.0 + _exp(-bv)), mask=g_mask)


def post_conv_prep_triton(conv_output, a, b, A_log, dt_bias, num_k_heads, head_k_dim,
                          head_v_dim, apply_l2norm=True, output_g_exp=False):
    """Runs the Triton kernel; same arguments and results as the op."""
    L, HV = check_args(conv_output, a, b, A_log, dt_bias, num_k_heads, head_k_dim, head_v_dim)
    H, K, V = num_k_heads, head_k_dim, head_v_dim
    outputs = empty_outputs(conv_output, L, H, HV, K, V)
    if L == 0:
        return outputs
    q, k, v, g, beta = outputs
    block_k, block_v = triton.next_power_of_2(K), triton.next_power_of_2(V)
    block_hv = triton.next_power_of_2(HV)
    # About 4096 elements per program; more rows per program when interpreted,
    # where each program costs a Python call.
    target = 1 << 15 if INTERPRET else 1 << 12
    block_l = max(1, min(triton.next_power_of_2(L), target // max(block_k, block_v, block_hv)))
    grid = (triton.cdiv(L, block_l), 2 * H + HV + 1)
    # Launch on the inputs' device, not the current one.
    with torch.cuda.device(conv_output.device) if conv_output.is_cuda else contextlib.nullcontext():
        _post_conv_prep_kernel[grid](
            conv_output, conv_output.stride(0), conv_output.stride(1),
            a, a.stride(0), a.stride(1), b, b.stride(0), b.stride(1),
            A_log, A_log.stride(0), dt_bias, dt_bias.stride(0),
            q, k, v, g, beta,
            L, H, HV, K, V,
            APPLY_L2NORM=apply_l2norm, OUTPUT_G_EXP=output_g_exp,
            BLOCK_L=block_l, BLOCK_K=block_k, BLOCK_V=block_v, BLOCK_HV=block_hv,
        )
    return outputs


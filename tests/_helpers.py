"""Inputs in every layout SPEC.md accepts, and the comparison of a backend's
outputs with the float64 reference under SPEC.md's accuracy bounds."""
import os

import pytest
import torch

import gdn_ext
from gdn_ext.ops import backend_unavailable_reason

HAS_GPU = torch.cuda.is_available()
TESTS = os.path.dirname(os.path.abspath(__file__))


def subprocess_env(**extra):
    """The environment for a Python subprocess of a test (run with cwd=TESTS):
    it imports the gdn_ext this process imported (the checkout's, or an
    installed wheel's), and these tests' helpers."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(gdn_ext.__file__)))
    path = [package_parent, TESTS] + [p for p in [os.environ.get("PYTHONPATH")] if p]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(path), **extra)
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
requires_gpu = pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA GPU (none visible here)")

DTYPES = (torch.bfloat16, torch.float16, torch.float32)
FLT_MIN = torch.finfo(torch.float32).tiny
_MANTISSA_BITS = {torch.bfloat16: 7, torch.float16: 10}
_MIN_SPACING = {torch.bfloat16: 2.0 ** -133, torch.float16: 2.0 ** -24}


def backend_device(backend):
    """The device a backend's tests run on here, or None (with the reason)."""
    device = "cuda" if backend == "cuda" or (backend == "triton" and HAS_GPU) else "cpu"
    return device, backend_unavailable_reason(backend, device)


def device_for(backend):
    device, reason = backend_device(backend)
    if reason is not None:
        pytest.skip(reason)
    return device


class Inputs:
    """One set of op arguments. `layout` names how conv_output (and a, b,
    A_log, dt_bias) sit in memory; the values are fresh random numbers."""

    def __init__(self, L, H, HV, K, V, dtype, device, layout="row_major", param_dtype=None,
                 gen=None, x_range=None):
        self.L, self.H, self.HV, self.K, self.V = L, H, HV, K, V
        D = 2 * H * K + HV * V
        param_dtype = param_dtype or torch.float32
        gen = gen or torch.Generator().manual_seed(torch.seed() % 2**31)

        def randn(*shape, scale=1.0):
            return torch.randn(*shape, generator=gen) * scale

        # Activations: mixed scales so heads' norms differ.
        if layout == "channel_first":  # causal_conv1d(x.T).T
            conv = randn(D, L).to(dtype).to(device).T
        elif layout == "padded":
            conv = randn(L, D + 40).to(dtype).to(device)[:, :D]
        elif layout == "offset":  # storage offset of 3 elements: not 16-byte aligned
            conv = randn(L * D + 3).to(dtype).to(device)[3:].view(L, D)
        elif layout == "view":  # a column block of a larger buffer
            conv = randn(L, D + 64).to(dtype).to(device)[:, 32:32 + D]
        else:
            conv = randn(L, D).to(dtype).to(device)
        if layout in ("ba_chunk", "channel_first", "padded", "view"):
            a, b = (randn(L, 2 * HV) * 3).to(dtype).to(device).chunk(2, dim=-1)
        else:
            a = (randn(L, HV) * 3).to(dtype).to(device)
            b = (randn(L, HV) * 3).to(dtype).to(device)
        if x_range is not None:  # a sweep of x = a + dt_bias over [lo, hi]
            lo, hi = x_range
            a = (lo + (hi - lo) * torch.rand(L, HV, generator=gen)).to(dtype).to(device)
            b = (lo + (hi - lo) * torch.rand(L, HV, generator=gen)).to(dtype).to(device)
        A_log = torch.empty(HV).uniform_(0, 16, generator=gen).clamp_min(1).log()
        dt_bias = randn(HV)
        if layout == "strided_params":
            A_log = torch.stack([A_log, randn(HV)], -1).to(param_dtype).to(device)[:, 0]
            dt_bias = torch.stack([dt_bias, randn(HV)], -1).to(param_dtype).to(device)[:, 0]
        else:
            A_log, dt_bias = A_log.to(param_dtype).to(device), dt_bias.to(param_dtype).to(device)
        self.conv, self.a, self.b, self.A_log, self.dt_bias = conv, a, b, A_log, dt_bias

    def args(self, apply_l2norm=True, output_g_exp=False):
        return (self.conv, self.a, self.b, self.A_log, self.dt_bias, self.H, self.K, self.V,
                apply_l2norm, output_g_exp)

    @classmethod
    def of(cls, conv, a, b, A_log, dt_bias, H, K, V):
        """Inputs holding the given tensors (no new data)."""
        self = cls.__new__(cls)
        self.conv, self.a, self.b, self.A_log, self.dt_bias = conv, a, b, A_log, dt_bias
        self.L, self.H, self.HV, self.K, self.V = conv.shape[0], H, A_log.shape[0], K, V
        return self


def poisoned(fn, inputs):
    """Calls fn() right after freeing NaN-filled blocks of the outputs' sizes,
    so that the allocator hands the outputs memory that reads NaN wherever a
    kernel fails to write."""
    L, H, HV, K, V = inputs.L, inputs.H, inputs.HV, inputs.K, inputs.V
    dev, dt = inputs.conv.device, inputs.conv.dtype
    bait = [torch.full(s, float("nan"), dtype=d, device=dev)
            for s, d in (((L, H, K), dt), ((L, H, K), dt), ((L, HV, V), dt),
                         ((L, HV), torch.float32), ((L, HV), torch.float32))]
    del bait
    return fn()


def _bits(t):
    return t.view({torch.float32: torch.int32}.get(t.dtype, torch.int16))


def assert_bit_exact(out, expected, what):
    assert out.shape == expected.shape, what
    mismatch = (_bits(out.contiguous()) != _bits(expected.contiguous())).sum().item()
    assert mismatch == 0, f"{what}: {mismatch} elements differ bitwise from the input"


def ulp(ref, dtype):
    """The spacing of `dtype` at |ref| (float64): |ref| in [2^(e-1), 2^e) has
    spacing 2^(e-1-mantissa bits); below the normal range, the subnormal one."""
    _, exp = torch.frexp(ref)
    bits = 23 if dtype == torch.float32 else _MANTISSA_BITS[dtype]
    smallest = 2.0 ** -149 if dtype == torch.float32 else _MIN_SPACING[dtype]
    return torch.ldexp(torch.ones_like(ref), exp - 1 - bits).clamp_min(smallest)


def assert_qk_close(out, ref, what):
    """bf16/fp16: within 1 ulp of the output dtype at the float64 value;
    fp32: relative 2e-6 plus 1e-7 absolute."""
    out64 = out.double()
    err = (out64 - ref).abs()
    if out.dtype == torch.float32:
        bound = 2e-6 * ref.abs() + 1e-7
    else:
        bound = ulp(ref, out.dtype)
    bad = ~(err <= bound)
    assert not bad.any(), (f"{what}: {bad.sum().item()} of {out.numel()} elements out of bounds; "
                           f"worst err {err[bad].max().item():.3g} at ref "
                           f"{ref[bad][err[bad].argmax()].item():.6g}")


def assert_f32_close(out, ref, rel, what):
    """Relative `rel` (a number or tensor) where the reference is a normal
    float32; absolute 1e-38 below that."""
    assert out.dtype == torch.float32, what
    out64 = out.double()
    err = (out64 - ref).abs()
    normal = ref.abs() >= FLT_MIN
    bound = torch.where(normal, rel * ref.abs(), torch.full_like(ref, 1e-38))
    bad = ~(err <= bound)
    assert not bad.any(), (f"{what}: {bad.sum().item()} of {out.numel()} elements out of bounds; "
                           f"worst rel err {(err / ref.abs())[bad].max().item():.3g}")


def check_against_reference(outputs, inputs, apply_l2norm=True, output_g_exp=False):
    """Every output of one call against the float64 reference (SPEC.md)."""
    L, H, HV, K, V = inputs.L, inputs.H, inputs.HV, inputs.K, inputs.V
    conv = inputs.conv
    q, k, v, g, beta = outputs
    dt = conv.dtype
    for name, t, shape, dtype in (("q", q, (L, H, K), dt), ("k", k, (L, H, K), dt),
                                  ("v", v, (L, HV, V), dt), ("g", g, (L, HV), torch.float32),
                                  ("beta", beta, (L, HV), torch.float32)):
        assert tuple(t.shape) == shape and t.dtype == dtype, (name, t.shape, t.dtype)
        assert t.is_contiguous(), f"{name} is not contiguous"
        assert t.device == conv.device, name
    # The reference runs where the inputs are: float64 on the GPU is exact
    # enough for these bounds and keeps the GPU suite fast.
    rq, rk, _, rg, rbeta = gdn_ext.reference_post_conv_prep(*inputs.args()[:5], H, K, V,
                                                            apply_l2norm, False)
    assert_bit_exact(v, conv[:, 2 * H * K:].reshape(L, HV, V), "v")
    if apply_l2norm:
        assert_qk_close(q, rq, "q")
        assert_qk_close(k, rk, "k")
    else:
        assert_bit_exact(q, conv[:, :H * K].reshape(L, H, K), "q (no l2norm)")
        assert_bit_exact(k, conv[:, H * K:2 * H * K].reshape(L, H, K), "k (no l2norm)")
    if output_g_exp:
        assert_f32_close(g, torch.exp(rg), 1e-6 * rg.abs().clamp_min(1), "exp(g)")
    else:
        assert_f32_close(g, rg, 1e-6, "g")
    assert_f32_close(beta, rbeta, 1e-6, "beta")


def _ulps_apart(x, y):
    """Distance in units of the dtype's spacing at max(|x|, |y|); below the
    normal range the spacing is the subnormal one."""
    if x.dtype == torch.float32:
        spacing, smallest = 2.0 ** -23, 2.0 ** -149
    else:
        spacing, smallest = 2.0 ** -_MANTISSA_BITS[x.dtype], _MIN_SPACING[x.dtype]
    scale = torch.maximum(x.double().abs(), y.double().abs()).clamp_min(1e-30)
    _, exp = torch.frexp(scale)
    ulp = torch.ldexp(torch.full_like(scale, spacing), exp - 1).clamp_min(smallest)
    return (x.double() - y.double()).abs() / ulp


def assert_backends_agree(x_out, y_out):
    """Two kernels' outputs for the same call. Each meets SPEC's q/k bound
    against the float64 value, so they differ by at most twice it: 2 ulp in
    bf16/fp16, 2 * (2e-6 relative + 1e-7) in fp32. v agrees bitwise, g and
    beta within 2e-6 relative."""
    for name, x, y in zip("qk", x_out[:2], y_out[:2]):
        if x.dtype == torch.float32:
            torch.testing.assert_close(x, y, rtol=4e-6, atol=2e-7, msg=name)
        elif x.numel():
            assert _ulps_apart(x, y).max().item() <= 2, name
    assert torch.equal(x_out[2], y_out[2]), "v"
    for name, x, y in zip(("g", "beta"), x_out[3:], y_out[3:]):
        torch.testing.assert_close(x, y, rtol=2e-6, atol=1e-38, equal_nan=True, msg=name)

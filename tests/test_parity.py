"""Every backend against the float64 reference (SPEC.md bounds), over dtypes,
shapes, sequence lengths and both flags, on fresh random data with poisoned
output memory."""
import itertools

import pytest
import torch

from _helpers import DTYPES, INTERPRET, Inputs, check_against_reference, device_for, poisoned
from gdn_ext import fused_post_conv_prep

# (H, HV, K, V): Qwen3-Next / Qwen3.5 shapes, small heads, GQA 3, a tiny one,
# and K, V that are not multiples of 8 (no 16-byte fast path).
SHAPES = [(16, 32, 128, 128), (16, 64, 128, 128), (4, 8, 64, 64), (2, 6, 96, 80),
          (1, 1, 32, 16), (3, 5, 36, 20)]
LENGTHS = [0, 1, 15, 16, 17, 300, 2048]
FLAGS = list(itertools.product([True, False], [False, True]))  # apply_l2norm, output_g_exp

# The interpreter runs each Triton program in Python: a smaller set there.
INTERPRETED_SHAPES = [(4, 8, 64, 64), (2, 6, 96, 80), (3, 5, 36, 20)]
INTERPRETED_LENGTHS = [0, 1, 17, 300]


def cases(backend):
    interpreted = backend == "triton" and INTERPRET
    shapes = INTERPRETED_SHAPES if interpreted else SHAPES
    lengths = INTERPRETED_LENGTHS if interpreted else LENGTHS
    for shape, L, dtype, (l2, gexp) in itertools.product(shapes, lengths, DTYPES, FLAGS):
        yield pytest.param(backend, shape, L, dtype, l2, gexp,
                           id=f"{backend}-{'x'.join(map(str, shape))}-L{L}-{str(dtype)[6:]}"
                              f"-l2{int(l2)}-gexp{int(gexp)}")


@pytest.mark.parametrize("backend,shape,L,dtype,apply_l2norm,output_g_exp",
                         [c for b in ("cuda", "triton", "cpu") for c in cases(b)])
def test_matches_reference(backend, shape, L, dtype, apply_l2norm, output_g_exp):
    device = device_for(backend)
    inputs = Inputs(L, *shape, dtype, device)
    out = poisoned(lambda: fused_post_conv_prep(*inputs.args(apply_l2norm, output_g_exp),
                                                backend=backend), inputs)
    check_against_reference(out, inputs, apply_l2norm, output_g_exp)


@pytest.mark.parametrize("shape", [(4, 8, 64, 64), (2, 6, 96, 80)])
def test_reference_backend_matches_reference(shape):
    inputs = Inputs(33, *shape, torch.bfloat16, "cpu")
    check_against_reference(fused_post_conv_prep(*inputs.args(), backend="reference"), inputs)


def _ulps_apart(x, y):
    """Distance in units of the dtype's spacing at max(|x|, |y|)."""
    if x.dtype == torch.float32:
        spacing = 2.0 ** -23
    else:
        spacing = 2.0 ** -(7 if x.dtype == torch.bfloat16 else 10)
    scale = torch.maximum(x.double().abs(), y.double().abs()).clamp_min(1e-30)
    _, exp = torch.frexp(scale)
    return (x.double() - y.double()).abs() / torch.ldexp(torch.full_like(scale, spacing), exp - 1)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("layout", ["row_major", "channel_first", "offset"])
def test_cuda_and_triton_agree(dtype, shape, layout):
    """The two GPU kernels are each other's oracle. Each meets SPEC's q/k
    bound against the float64 value, so they differ by at most twice it:
    2 ulp in bf16/fp16, 2 * (2e-6 relative + 1e-7) in fp32. v agrees bitwise,
    g and beta within 2e-6 relative."""
    device_for("cuda")
    device_for("triton")
    inputs = Inputs(1000, *shape, dtype, "cuda", layout=layout)
    for flags in ((True, False), (False, True)):
        cu = fused_post_conv_prep(*inputs.args(*flags), backend="cuda")
        tr = fused_post_conv_prep(*inputs.args(*flags), backend="triton")
        for name, x, y in zip("qk", cu[:2], tr[:2]):
            if dtype == torch.float32:
                torch.testing.assert_close(x, y, rtol=4e-6, atol=2e-7, msg=name)
            else:
                assert _ulps_apart(x, y).max().item() <= 2, name
        assert torch.equal(cu[2], tr[2]), "v"
        for name, x, y in zip(("g", "beta"), cu[3:], tr[3:]):
            torch.testing.assert_close(x, y, rtol=2e-6, atol=1e-38, msg=name)

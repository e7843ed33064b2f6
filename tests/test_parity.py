"""Every backend against the float64 reference (SPEC.md bounds), over dtypes,
shapes, sequence lengths and both flags, on fresh random data with poisoned
output memory."""
import itertools

import pytest
import torch

from _helpers import (DTYPES, INTERPRET, Inputs, assert_backends_agree, check_against_reference,
                      device_for, poisoned)
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


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("layout", ["row_major", "channel_first", "offset"])
def test_cuda_and_triton_agree(dtype, shape, layout):
    device_for("cuda")
    device_for("triton")
    inputs = Inputs(1000, *shape, dtype, "cuda", layout=layout)
    for flags in ((True, False), (False, True)):
        assert_backends_agree(fused_post_conv_prep(*inputs.args(*flags), backend="cuda"),
                              fused_post_conv_prep(*inputs.args(*flags), backend="triton"))

"""Op 2, causal_conv1d_post_conv_prep: every backend against the float64
reference (SPEC.md op 2 bounds, cache lines bit-exact) over dtypes, shapes,
conv widths, batches of sequences, cache layouts and indices, on fresh
random data with poisoned output memory."""
import itertools
import os
import subprocess
import sys

import pytest
import torch

from _conv_helpers import PAD, ConvInputs, assert_states_equal, check_conv_against_reference, \
    run_poisoned
from _helpers import DTYPES, INTERPRET, TESTS, _ulps_apart, device_for, subprocess_env
from gdn_ext import causal_conv1d_post_conv_prep, fused_post_conv_prep

# (H, HV, K, V): Qwen3-Next (16,32), Qwen3.5-27B (16,48: HV not a power of
# two), (16,64), their tensor-parallel splits, and odd K/V (no packed path).
SHAPES = [(16, 32, 128, 128), (16, 48, 128, 128), (16, 64, 128, 128), (8, 24, 128, 128),
          (4, 12, 128, 128), (2, 6, 128, 128), (3, 5, 36, 20), (1, 1, 5, 7)]
SMALL_SHAPES = [(2, 6, 128, 128), (3, 5, 36, 20), (1, 1, 5, 7)]
WIDTHS = [2, 3, 4]


def batches(W):
    """Batches of 1, 3 and 17 sequences with lengths 0, 1, W-2, W-1, 64, 1000,
    and a decode-shaped batch (T <= 2B: the CUDA decode kernel) whose empty
    and longer sequences are not one token each."""
    mix = [0, 1, W - 2, W - 1, 64, 1000, 5, 1, 0, W, 2, 1, 33, W - 1, 1, 7, 3]
    return {"B1": [1000], "B3": [W - 1, 0, 64], "B17": mix,
            "B8_decode": [1, 0, 2, 1, W - 1, 1, 1, 0]}


# The conv's weight and bias: float32, or in x's dtype as checkpoints hold
# them (the CUDA backend's packed kernels read those as packs, without a
# dtype switch, in kernels of their own), with a bias or without.
WEIGHTS = {"f32": {}, "like_x": {"like_x": True}, "like_x_no_bias": {"like_x": True, "bias": False}}


def weight_kwargs(weights, dtype):
    """ConvInputs keyword arguments for WEIGHTS[weights], x in dtype."""
    kwargs = dict(WEIGHTS[weights])
    if kwargs.pop("like_x", False):
        kwargs["weight_dtype"] = dtype
    return kwargs


def cases(backend):
    """The conv's weight and bias are float32, and on a GPU also in x's dtype
    ("like_x"; the same as float32 for float32 x)."""
    interpreted = backend == "triton" and INTERPRET
    weights = ("f32",)
    if interpreted:
        shapes, dtypes, names = SMALL_SHAPES[1:], (torch.bfloat16, torch.float32), ("B3",)
    elif backend in ("cpu", "reference"):
        shapes, dtypes, names = (SMALL_SHAPES + [(16, 32, 128, 128)], DTYPES,
                                 ("B1", "B3", "B17", "B8_decode"))
    else:
        shapes, dtypes, names = SHAPES, DTYPES, ("B1", "B3", "B17", "B8_decode")
        weights = ("f32", "like_x")
    for shape, W, dtype, name, weight in itertools.product(shapes, WIDTHS, dtypes, names, weights):
        if weight == "like_x" and dtype == torch.float32:
            continue
        yield pytest.param(backend, shape, W, dtype, name, weight,
                           id=f"{backend}-{'x'.join(map(str, shape))}-W{W}-{str(dtype)[6:]}-{name}"
                              f"-{weight}")


def run(inputs, backend, states, **kw):
    return run_poisoned(lambda: causal_conv1d_post_conv_prep(*inputs.args(states, **kw),
                                                             backend=backend), inputs)


@pytest.mark.parametrize("backend,shape,W,dtype,batch,weights",
                         [c for b in ("cuda", "triton", "cpu") for c in cases(b)])
def test_matches_reference(backend, shape, W, dtype, batch, weights):
    device = device_for(backend)
    inputs = ConvInputs(batches(W)[batch], *shape, W, dtype, device,
                        **weight_kwargs(weights, dtype))
    states = inputs.fresh_states()
    out = run(inputs, backend, states)
    check_conv_against_reference(out, states, inputs, inputs.conv_states)


def test_small_ring_matches_reference():
    """The prefill kernel with the 8-slot ring of rows, which GPUs with 99 KB
    of shared memory a block run (sm_86, sm_89) in bf16/fp16 at W = 4,
    forced on this GPU (GDN_EXT_CONV_RING_SLOTS=8, read once: a subprocess),
    through test_matches_reference's bf16/fp16 CUDA cases at W = 4."""
    device_for("cuda")
    env = subprocess_env(GDN_EXT_CONV_RING_SLOTS="8")
    run = subprocess.run([sys.executable, "-m", "pytest", os.path.abspath(__file__), "-q", "-x",
                          "-p", "no:cacheprovider", "-k",
                          "test_matches_reference and cuda and W4 and float16"],
                         env=env, cwd=TESTS, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


@pytest.mark.parametrize("weight_dtype", [torch.float32, torch.bfloat16], ids=["f32", "like_x"])
@pytest.mark.parametrize("shape", [(16, 32, 128, 128), (2, 6, 128, 128)], ids=["16x32", "2x6"])
def test_long_prefill_matches_reference(shape, weight_dtype):
    """A prefill of 4,200 tokens in two sequences. On an H100 or H200 the CUDA
    kernel's gate blocks outnumber its conv blocks at (16,32), so they go
    behind them, and they stay in front at (2,6): both orders of the grid,
    against the reference."""
    device = device_for("cuda")
    inputs = ConvInputs([3000, 1200], *shape, 4, torch.bfloat16, device, weight_dtype=weight_dtype)
    states = inputs.fresh_states()
    out = run(inputs, "cuda", states)
    check_conv_against_reference(out, states, inputs, inputs.conv_states)


BACKENDS = ["cuda", "triton", "cpu", "reference"]


LAYOUTS = {
    # name: ConvInputs keyword arguments
    "x_channel_first": dict(x_layout="channel_first"),
    "x_padded": dict(x_layout="padded"),
    "x_offset": dict(x_layout="offset"),
    "states_wd": dict(state_layout="wd"),
    "states_strided": dict(state_layout="strided"),
    "identity_lines_no_initial": dict(lines="identity", initial="none"),
    "all_initial": dict(initial="all"),
    "no_bias_bf16_weight": dict(bias=False, weight_dtype=torch.bfloat16),
    "weight_transposed_fp16": dict(weight_layout="transposed", weight_dtype=torch.float16),
    # Pad slots and lines outside [0, N): read zeros, write nothing.
    "pad_and_out_of_range": dict(lines=[PAD, 3, 9, -5, 0], initial=[True, True, True, True, False],
                                 num_lines=5),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "f32"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_layouts_and_cache_indices(backend, dtype, layout):
    device = device_for(backend)
    shape = (2, 6, 32, 16) if backend == "triton" and INTERPRET else (4, 12, 128, 128)
    lengths = [5, 1, 0, 70, 2]
    inputs = ConvInputs(lengths, *shape, 4, dtype, device, **LAYOUTS[layout])
    states = inputs.fresh_states()
    out = run(inputs, backend, states)
    check_conv_against_reference(out, states, inputs, inputs.conv_states)


@pytest.mark.parametrize("flags", [(False, False), (True, True)], ids=["no_l2", "g_exp"])
@pytest.mark.parametrize("silu", [True, False], ids=["silu", "identity"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_flags(backend, silu, flags):
    device = device_for(backend)
    inputs = ConvInputs([3, 40, 1], 2, 6, 32, 16, 3, torch.bfloat16, device)
    states = inputs.fresh_states()
    out = run_poisoned(lambda: causal_conv1d_post_conv_prep(
        *inputs.args(states, *flags), activation="silu" if silu else None, backend=backend), inputs)
    check_conv_against_reference(out, states, inputs, inputs.conv_states, *flags, silu=silu)


@pytest.mark.parametrize("weights", list(WEIGHTS))
@pytest.mark.parametrize("batch", [1, 8, 33])
@pytest.mark.parametrize("backend", BACKENDS)
def test_decode_steps(backend, batch, weights):
    """Pure decode (every sequence one token, all continuing from their
    lines), five steps in a row on the same cache. (2,6,32,16) has 224
    features: a warp's strip of 16-byte columns that ends part way (28 of 32
    lanes in bf16), whose other lanes store nothing."""
    device = device_for(backend)
    small = (2, 6, 32, 16)
    shapes = [small] if backend == "triton" and INTERPRET else [(16, 32, 128, 128), small]
    dtypes = (torch.bfloat16, torch.float32) + ((torch.float16,) if weights != "f32" else ())
    for shape, dtype in itertools.product(shapes, dtypes):
        inputs = ConvInputs([1] * batch, *shape, 4, dtype, device, initial="all",
                            **weight_kwargs(weights, dtype))
        states = inputs.fresh_states()
        for _ in range(5):
            before = states.clone()
            out = run(inputs, backend, states)
            check_conv_against_reference(out, states, inputs, before)
            inputs.x = torch.randn_like(inputs.x)


def random_lines(batch, gen):
    """Distinct cache lines in random order for `batch` sequences out of
    batch + 3, about 3% of them pad slots and 2% past the cache; and N."""
    num_lines = batch + 3
    lines = torch.randperm(num_lines, generator=gen)[:batch]
    v = torch.rand(batch, generator=gen)
    lines[v < 0.03], lines[(v >= 0.03) & (v < 0.05)] = PAD, num_lines + 5
    return lines.tolist(), num_lines


@pytest.mark.parametrize("W", WIDTHS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "f32"])
@pytest.mark.parametrize("state_layout", ["dnw", "wd", "strided"])
@pytest.mark.parametrize("shape,batch", [((16, 32, 128, 128), 1100), ((2, 6, 128, 128), 16384)],
                         ids=["16x32-B1100", "2x6-B16384"])
def test_large_decode_batch(shape, batch, state_layout, dtype, W):
    """A decode step of many sequences, so that the CUDA decode kernel's work
    items take many tokens each (17 and 39 on a GPU of 132 SMs; the other
    decode tests have items of one token), each token's lookups on their way
    while the one before it computes. Mostly one-token sequences, with empty,
    two- and three-token ones (the boundary path between them), pad slots,
    lines out of range and mixed prior states, in each cache layout, bf16
    and float32, W = 2-4."""
    device = device_for("cuda")
    gen = torch.Generator().manual_seed(torch.seed() % 2**31)
    u = torch.rand(batch, generator=gen)
    lengths = torch.ones(batch, dtype=torch.int64)
    lengths[u < 0.02], lengths[(u >= 0.02) & (u < 0.04)], lengths[(u >= 0.04) & (u < 0.05)] = 0, 2, 3
    lines, num_lines = random_lines(batch, gen)
    inputs = ConvInputs(lengths.tolist(), *shape, W, dtype, device,
                        state_layout=state_layout, lines=lines, num_lines=num_lines,
                        weight_dtype=dtype, gen=gen)
    assert inputs.T <= 2 * inputs.B  # the decode kernel's calls
    states = inputs.fresh_states()
    out = run(inputs, "cuda", states)
    check_conv_against_reference(out, states, inputs, inputs.conv_states)


@pytest.mark.parametrize("x_layout", ["row_major", "channel_first"])
@pytest.mark.parametrize("batch", [33, 1100])
@pytest.mark.parametrize("backend", ["cuda", "triton", "cpu"])
def test_many_sequences_prefill(backend, batch, x_layout):
    """Prefill-shaped calls (T > 2B) of more sequences than a warp has lanes:
    the CUDA kernels look a token's sequence up with a lane a bound, so 33
    sequences take two rounds of the search and 1,100 three, and the prefill
    kernel first tries the sequence after the last one it saw. Lengths 0-3
    between longer ones, pad slots, lines out of range and mixed prior
    states; x row-major (the packed kernels) and channel-first (the strided
    one)."""
    device = device_for(backend)
    shape = (2, 6, 32, 16) if backend == "triton" and INTERPRET else (2, 6, 128, 128)
    gen = torch.Generator().manual_seed(torch.seed() % 2**31)
    lengths = torch.randint(0, 4, (batch,), generator=gen)
    lengths[::4] = torch.randint(12, 40, (len(lengths[::4]),), generator=gen)
    lines, num_lines = random_lines(batch, gen)
    inputs = ConvInputs(lengths.tolist(), *shape, 4, torch.bfloat16, device, x_layout=x_layout,
                        lines=lines, num_lines=num_lines, gen=gen)
    assert inputs.T > 2 * inputs.B  # the prefill kernel's calls
    states = inputs.fresh_states()
    out = run(inputs, backend, states)
    check_conv_against_reference(out, states, inputs, inputs.conv_states)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("split", [1, 2, 3, 5, 64])
def test_prefill_then_decode_equals_one_call(backend, split):
    """A sequence's tokens in two calls (the second continuing from the cache
    line the first left, then one token at a time) give the bits one call
    gives: the cache holds exactly what the conv needs, and no kernel's
    rounding depends on how many tokens a call has. On a GPU, several random
    inputs: a 1-ulp difference in one head showed in about 1 run in 20 of
    Triton's when its tile height followed the call's size."""
    device = device_for(backend)
    for _ in range(8 if device == "cuda" else 1):
        _check_prefill_then_decode(device, backend, split)


def _check_prefill_then_decode(device, backend, split):
    W, n = 4, 70
    whole = ConvInputs([n], 2, 6, 32, 16, W, torch.bfloat16, device, lines=[1], initial=[False],
                       num_lines=3)
    states = whole.fresh_states()
    expected = causal_conv1d_post_conv_prep(*whole.args(states), backend=backend)
    expected_states = states

    states = whole.fresh_states()
    pieces = [(0, split)] + [(t, t + 1) for t in range(split, n)]
    outs = []
    for i, (s, e) in enumerate(pieces):
        part = ConvInputs.__new__(ConvInputs)
        part.__dict__.update(whole.__dict__)
        part.x, part.a, part.b = whole.x[s:e], whole.a[s:e], whole.b[s:e]
        part.T, part.lengths = e - s, [e - s]
        part.query_start_loc = torch.tensor([0, e - s], dtype=torch.int32, device=device)
        part.has_initial_state = torch.tensor([i > 0], device=device)
        outs.append(causal_conv1d_post_conv_prep(*part.args(states), backend=backend))
    for name, x, y in zip("qkvgb", expected, (torch.cat(o) for o in zip(*outs))):
        assert torch.equal(x, y), name
    assert_states_equal(states, expected_states)


def test_equals_conv_then_op1_on_cpu():
    """With the conv computed the same way, op 2's q/k/v are op 1 on the
    conv output: the rounding of y happens before the L2 norm."""
    inputs = ConvInputs([30, 9], 2, 6, 32, 16, 4, torch.bfloat16, "cpu", initial="none")
    states = inputs.fresh_states()
    q, k, v, g, beta = causal_conv1d_post_conv_prep(*inputs.args(states), backend="cpu")
    # The unfused chain: PyTorch's channel-first conv + SiLU, per sequence.
    ys = []
    for s, e in ((0, 30), (30, 39)):
        xs = inputs.x[s:e].float().T[None]
        conv = torch.nn.functional.conv1d(torch.nn.functional.pad(xs, (3, 0)),
                                          inputs.conv_weight.float()[:, None], inputs.conv_bias,
                                          groups=inputs.D)
        ys.append(torch.nn.functional.silu(conv)[0].T.to(torch.bfloat16))
    ref = fused_post_conv_prep(torch.cat(ys), inputs.a, inputs.b, inputs.A_log, inputs.dt_bias,
                               2, 32, 16, backend="cpu")
    for name, x, y in zip("qkv", (q, k, v), ref[:3]):
        assert _ulps_apart(x, y).max().item() <= 2, name
    assert torch.equal(g, ref[3]) and torch.equal(beta, ref[4])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("layout", ["row_major", "channel_first", "offset"])
def test_cuda_and_triton_agree(dtype, shape, layout):
    device_for("cuda")
    device_for("triton")
    inputs = ConvInputs(batches(4)["B17"], *shape, 4, dtype, "cuda", x_layout=layout)
    results = []
    for backend in ("cuda", "triton"):
        states = inputs.fresh_states()
        results.append((causal_conv1d_post_conv_prep(*inputs.args(states), backend=backend),
                        states))
    (x_out, x_states), (y_out, y_states) = results
    assert_states_equal(x_states, y_states)
    for name, x, y in zip("qkv", x_out[:3], y_out[:3]):
        if dtype == torch.float32:
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=name)
        else:
            assert _ulps_apart(x, y).max().item() <= 2, name
    for name, x, y in zip(("g", "beta"), x_out[3:], y_out[3:]):
        torch.testing.assert_close(x, y, rtol=2e-6, atol=1e-38, msg=name)


def test_empty_call_writes_nothing():
    inputs = ConvInputs([0, 0], 2, 6, 32, 16, 4, torch.float32, "cpu")
    states = inputs.fresh_states()
    out = causal_conv1d_post_conv_prep(*inputs.args(states))
    assert all(t.shape[0] == 0 for t in out)
    assert torch.equal(states, inputs.conv_states)

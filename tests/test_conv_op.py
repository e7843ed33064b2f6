"""Op 2 as torch sees it: opcheck (schema, mutation of conv_states, fake
impl), the .out variant, torch.compile(fullgraph=True), CUDA-graph capture of
a decode step, and the wrapper's validate= and activation= arguments."""
import pytest
import torch

from _conv_helpers import PAD, ConvInputs, assert_states_equal, check_conv_against_reference
from _helpers import device_for, requires_gpu
from gdn_ext import _library, causal_conv1d_post_conv_prep

from test_out import out_buffers, untouched_outside


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=requires_gpu)])
@pytest.mark.parametrize("case", ["prefill", "decode", "channel_first_no_bias"])
def test_opcheck(device, case):
    kw = dict(x_layout="channel_first", bias=False) if case == "channel_first_no_bias" else {}
    lengths = [1, 1, 1, 1] if case == "decode" else [5, 0, 9]
    inputs = ConvInputs(lengths, 2, 4, 32, 16, 4, torch.bfloat16, device, **kw)
    torch.library.opcheck(torch.ops.gdn.causal_conv1d_post_conv_prep.default,
                          inputs.args(inputs.fresh_states()))
    outs, _ = out_buffers(_as_op1_inputs(inputs), "contiguous")
    torch.library.opcheck(torch.ops.gdn.causal_conv1d_post_conv_prep.out,
                          inputs.args(inputs.fresh_states()),
                          dict(zip(("q", "k", "v", "g", "beta"), outs)))


def _as_op1_inputs(inputs):
    """What test_out's buffer helpers read: conv, L and the sizes."""
    class View:
        conv, L = inputs.x, inputs.T
        H, HV, K, V = inputs.H, inputs.HV, inputs.K, inputs.V
    return View


@pytest.mark.parametrize("layout", ["contiguous", "padded", "transposed"])
@pytest.mark.parametrize("backend", ["cuda", "triton", "cpu", "reference"])
def test_out_matches_reference(backend, layout):
    device = device_for(backend)
    inputs = ConvInputs([7, 1, 30], 2, 4, 64, 32, 3, torch.bfloat16, device)
    outs, bases = out_buffers(_as_op1_inputs(inputs), layout)
    states = inputs.fresh_states()
    got = causal_conv1d_post_conv_prep(*inputs.args(states), backend=backend, out=outs)
    assert all(g is o for g, o in zip(got, outs)), "out= must return the given tensors"
    check_conv_against_reference([t.contiguous() for t in outs], states, inputs,
                                 inputs.conv_states)
    untouched_outside(outs, bases)


@pytest.mark.parametrize("backend", ["cuda", "cpu", "triton", "reference"])
def test_out_names_a_bad_output(backend):
    device = device_for(backend)
    inputs = ConvInputs([4], 2, 4, 32, 16, 4, torch.bfloat16, device)
    outs, _ = out_buffers(_as_op1_inputs(inputs), "contiguous")
    outs[2] = outs[2][:, :-1]
    with pytest.raises((RuntimeError, ValueError), match="causal_conv1d_post_conv_prep.*out v"):
        causal_conv1d_post_conv_prep(*inputs.args(inputs.fresh_states()), backend=backend,
                                     out=outs)


def _decode_step(x, weight, bias, states, qsl, lines, initial, a, b, A_log, dt_bias):
    q, k, v, g, beta = torch.ops.gdn.causal_conv1d_post_conv_prep(
        x, weight, bias, states, qsl, lines, initial, a, b, A_log, dt_bias, 2, 32, 16)
    return q, k, v, g, beta, (q.float() * 2).sum(-1) + g.exp().mean(-1, keepdim=True)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=requires_gpu)])
def test_torch_compile_fullgraph_mutates_the_cache(device):
    torch._dynamo.reset()
    compiled = torch.compile(_decode_step, fullgraph=True, dynamic=False)
    inputs = ConvInputs([1, 1, 1], 2, 4, 32, 16, 4, torch.bfloat16, device, initial="all")
    eager_states, compiled_states = inputs.fresh_states(), inputs.fresh_states()
    for _ in range(3):
        args = list(inputs.args())[:11]
        want = _decode_step(*args[:3], eager_states, *args[4:])
        got = compiled(*args[:3], compiled_states, *args[4:])
        for w, g in zip(want[:5], got[:5]):
            torch.testing.assert_close(g, w, rtol=0, atol=0)
        assert_states_equal(compiled_states, eager_states)
        inputs.x = torch.randn_like(inputs.x)


@requires_gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("batch", [1, 64])
def test_decode_step_in_a_cuda_graph(backend, batch):
    """A decode step captured once and replayed with new tokens, a new
    order of cache lines and pad slots (what a serving engine's graph does)."""
    device_for(backend)
    inputs = ConvInputs([1] * batch, 4, 8, 64, 64, 4, torch.bfloat16, "cuda", initial="all",
                        num_lines=batch + 5)
    states = inputs.fresh_states()
    op = (torch.ops.gdn.causal_conv1d_post_conv_prep.default if backend == "cuda"
          else _library.causal_conv1d_post_conv_prep_triton)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        op(*inputs.args(states.clone()))  # Triton compiles outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = op(*inputs.args(states))
    gen = torch.Generator().manual_seed(0)
    for step in range(3):
        inputs.x.copy_(torch.randn(inputs.x.shape, generator=gen))
        order = torch.randperm(batch + 5, generator=gen)[:batch].to(torch.int32)
        if batch > 1:
            order[step] = PAD
        inputs.cache_indices.copy_(order)
        before = states.clone()
        for o in out:
            o.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        check_conv_against_reference(out, states, inputs, before)


def test_validate_names_bad_sequences_and_lines():
    inputs = ConvInputs([3, 2], 2, 4, 32, 16, 4, torch.float32, "cpu", lines=[0, 1], num_lines=3)
    args = list(inputs.args(inputs.fresh_states()))
    cases = [  # (argument index, value, words of the error or None for a valid call)
        (4, [0, 3, 4], "end at T = 5"),
        (4, [1, 3, 5], "start at 0"),
        (4, [0, 6, 5], "non-decreasing"),
        (4, [0, 0, 5], None),  # an empty sequence is fine
        (5, [0, 3], r"cache_indices\[1\] = 3 is neither"),
        (5, [2, 2], "both cache line 2"),
        (5, [7, PAD], r"cache_indices\[0\] = 7"),
        (5, [PAD, PAD], None),
    ]
    for index, value, words in cases:
        bad = list(args)
        bad[index] = torch.tensor(value, dtype=torch.int32)
        if words is None:
            causal_conv1d_post_conv_prep(*bad, validate=True)
            continue
        with pytest.raises(ValueError, match=words):
            causal_conv1d_post_conv_prep(*bad, validate=True)


def test_activation_names():
    inputs = ConvInputs([3], 2, 4, 32, 16, 4, torch.float32, "cpu")
    with pytest.raises(ValueError, match="activation must be 'silu'"):
        causal_conv1d_post_conv_prep(*inputs.args(inputs.fresh_states()), activation="gelu")
    for name in ("silu", "swish", None):
        states = inputs.fresh_states()
        out = causal_conv1d_post_conv_prep(*inputs.args(states), activation=name)
        check_conv_against_reference(out, states, inputs, inputs.conv_states, silu=name is not None)

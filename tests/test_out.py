"""The .out variant (`out=` in the wrapper): the op writes into the caller's
five tensors, of any strides, on every backend, and names a bad one."""
import pytest
import torch

from _helpers import DTYPES, Inputs, check_against_reference, device_for, requires_gpu
from gdn_ext import fused_post_conv_prep
from gdn_ext._checks import output_layout

SENTINEL = 123.0  # what the memory around a strided output holds; the op must leave it


def out_buffers(inputs, layout):
    """(outputs, bases): five NaN-filled outputs in `layout`, and the tensors
    they are views of (filled with SENTINEL outside the views)."""
    conv = inputs.conv
    outs, bases = [], []
    for _, shape, dtype in output_layout(conv, inputs.L, inputs.H, inputs.HV, inputs.K,
                                         inputs.V):
        if layout == "contiguous":
            base = torch.empty(shape, dtype=dtype, device=conv.device)
            view = base
        elif layout == "padded":  # each row padded by 8 elements at its end
            base = torch.full((shape[0], shape[1] * (shape[2] if len(shape) == 3 else 1) + 8),
                              SENTINEL, dtype=dtype, device=conv.device)
            view = base[:, :-8].view(shape) if len(shape) == 3 else base[:, :-8]
        else:  # "transposed": heads outermost in memory
            base = torch.full(shape[1:2] + shape[:1] + shape[2:], SENTINEL, dtype=dtype,
                              device=conv.device)
            view = base.transpose(0, 1)
        view.fill_(float("nan"))
        outs.append(view)
        bases.append(base)
    return outs, bases


def untouched_outside(outs, bases):
    for view, base in zip(outs, bases):
        mask = torch.ones(base.shape, dtype=torch.bool, device=base.device)
        if view.data_ptr() == base.data_ptr() and view.shape == base.shape:
            continue
        region = torch.zeros_like(mask)
        region.as_strided(view.shape, view.stride(), view.storage_offset()).fill_(True)
        mask &= ~region
        assert (base[mask] == SENTINEL).all(), "the op wrote outside an output view"


@pytest.mark.parametrize("layout", ["contiguous", "padded", "transposed"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("L", [0, 1, 37])
@pytest.mark.parametrize("backend", ["cuda", "triton", "cpu", "reference"])
def test_out_matches_reference(backend, L, dtype, layout):
    device = device_for(backend)
    inputs = Inputs(L, 2, 4, 64, 32, dtype, device, layout="channel_first" if L == 37 else
                    "row_major")
    outs, bases = out_buffers(inputs, layout)
    got = fused_post_conv_prep(*inputs.args(True, True), backend=backend, out=outs)
    assert all(g is o for g, o in zip(got, outs)), "out= must return the given tensors"
    check_against_reference([t.contiguous() for t in outs], inputs, True, True)
    untouched_outside(outs, bases)


@pytest.mark.parametrize("backend", ["cuda", "cpu"])
def test_out_gives_the_functional_bits(backend):
    """Same kernel either way: the .out variant and the op agree bitwise."""
    device = device_for(backend)
    inputs = Inputs(300, 16, 32, 128, 128, torch.bfloat16, device)
    want = fused_post_conv_prep(*inputs.args(), backend=backend)
    for layout in ("contiguous", "padded"):
        outs, _ = out_buffers(inputs, layout)
        torch.ops.gdn.fused_post_conv_prep.out(*inputs.args(), q=outs[0], k=outs[1], v=outs[2],
                                               g=outs[3], beta=outs[4])
        for name, w, o in zip("qkvgb", want, outs):
            assert torch.equal(w, o), (layout, name)


def bad_outputs():
    """(id, mutate(outs) -> None, words the message must contain)."""
    def reshaped(i, f):
        def mutate(outs):
            outs[i] = f(outs[i])
        return mutate

    return [
        ("q_rows", reshaped(0, lambda t: t[:-1]), ["out q", "shape"]),
        ("k_2d", reshaped(1, lambda t: t.flatten(1)), ["out k", "shape"]),
        ("v_dtype", reshaped(2, lambda t: t.float() if t.dtype != torch.float32 else t.half()),
         ["out v", "dtype"]),
        ("g_dtype", reshaped(3, lambda t: t.double()), ["out g", "dtype"]),
        ("beta_heads", reshaped(4, lambda t: t[:, :-1]), ["out beta", "shape"]),
    ]


@pytest.mark.parametrize("case", bad_outputs(), ids=lambda c: c[0])
@pytest.mark.parametrize("backend", ["cuda", "triton", "cpu", "reference"])
def test_bad_out_names_the_output(backend, case):
    device = device_for(backend)
    inputs = Inputs(5, 2, 4, 16, 8, torch.bfloat16, device)
    outs, _ = out_buffers(inputs, "contiguous")
    _, mutate, words = case
    mutate(outs)
    with pytest.raises((RuntimeError, ValueError)) as info:
        fused_post_conv_prep(*inputs.args(), backend=backend, out=outs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_out_must_be_five_tensors():
    inputs = Inputs(5, 2, 4, 16, 8, torch.float32, "cpu")
    outs, _ = out_buffers(inputs, "contiguous")
    with pytest.raises(ValueError, match="five tensors"):
        fused_post_conv_prep(*inputs.args(), out=outs[:4])


@requires_gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_out_on_another_device_is_named(backend):
    device_for(backend)
    inputs = Inputs(5, 2, 4, 16, 8, torch.float32, "cuda")
    outs, _ = out_buffers(inputs, "contiguous")
    outs[3] = outs[3].cpu()
    with pytest.raises((RuntimeError, ValueError), match="out g must be on"):
        fused_post_conv_prep(*inputs.args(), backend=backend, out=outs)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=requires_gpu)])
@pytest.mark.parametrize("layout", ["contiguous", "padded", "transposed"])
def test_out_opcheck(device, layout):
    inputs = Inputs(9, 2, 4, 32, 16, torch.bfloat16, device, layout="channel_first")
    outs, _ = out_buffers(inputs, layout)
    torch.library.opcheck(torch.ops.gdn.fused_post_conv_prep.out, inputs.args(),
                          dict(zip(("q", "k", "v", "g", "beta"), outs)))


def _step_into(conv, a, b, A_log, dt_bias, q, k, v, g, beta):
    torch.ops.gdn.fused_post_conv_prep.out(conv, a, b, A_log, dt_bias, 2, 32, 16, q=q, k=k, v=v,
                                           g=g, beta=beta)
    return (q.float() * 2).sum(-1) + g.exp().mean(-1, keepdim=True) * beta[:, :1]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=requires_gpu)])
def test_out_under_torch_compile_fullgraph(device):
    torch._dynamo.reset()
    compiled = torch.compile(_step_into, fullgraph=True, dynamic=False)
    for _ in range(2):
        inputs = Inputs(7, 2, 4, 32, 16, torch.bfloat16, device)
        got_outs, _ = out_buffers(inputs, "padded")
        want_outs, _ = out_buffers(inputs, "contiguous")
        got = compiled(*inputs.args()[:5], *got_outs)
        want = _step_into(*inputs.args()[:5], *want_outs)
        for name, g_out, w_out in zip("qkvgb", got_outs, want_outs):
            assert torch.equal(g_out, w_out), name
        torch.testing.assert_close(got, want)

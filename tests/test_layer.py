"""The op inside model code: a Gated DeltaNet layer with the fused op equals
the same layer with the unfused PyTorch chain, traces under
torch.compile(fullgraph=True), and gdn_ext.fused_post_conv_prep takes every
call form vLLM uses for its function of the same name."""
import pytest
import torch

import gdn_ext
import gdn_ext.layers
from _helpers import Inputs, check_against_reference, requires_gpu
from gdn_ext.layers import GatedDeltaNet

DEVICES = ["cpu", pytest.param("cuda", marks=requires_gpu)]


def _layer_pair(dtype, device, seed):
    torch.manual_seed(seed)
    layer = GatedDeltaNet(96, 2, 6, 32, 16, dtype=dtype, device=device)
    x = torch.randn(3, 11, 96, dtype=dtype, device=device)
    return layer, x


def _rel(x, y):
    return ((x.double() - y.double()).norm() / y.double().norm()).item()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_layer_fused_matches_unfused(device, dtype):
    layer, x = _layer_pair(dtype, device, seed=torch.seed() % 2**31)
    seen = []
    post_conv = layer.post_conv

    def recording_post_conv(conv_output, a, b):
        seen.append(conv_output.stride())
        return post_conv(conv_output, a, b)

    layer.post_conv = recording_post_conv
    with torch.no_grad():
        fused = layer(x)
        layer.fused_post_conv = False
        unfused = layer(x)
    # The op got the conv output as the channel-first view, not a copy.
    assert seen and all(stride[0] == 1 for stride in seen), seen
    assert torch.isfinite(fused).all()
    # fp32: q/k differ by float32 rounding alone (SPEC: 2e-6 relative). bf16:
    # q and k are each rounded once from the same float32 value, so they
    # differ by at most 1 bf16 ulp (2^-8 relative); g and beta are float32 in
    # both. The rest of the layer is the same code on both paths.
    bound = 1e-5 if dtype == torch.float32 else 1e-2
    assert _rel(fused, unfused) <= bound


@pytest.mark.parametrize("device", DEVICES)
def test_layer_compiles_fullgraph(device):
    torch._dynamo.reset()
    torch.manual_seed(torch.seed() % 2**31)
    layer = GatedDeltaNet(64, 2, 4, 16, 16, device=device)
    x = torch.randn(2, 5, 64, device=device)
    with torch.no_grad():
        eager = layer(x)
        compiled = torch.compile(layer, fullgraph=True)(x)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_vllm_call_forms(device):
    """Positional and keyword calls, as vLLM's model code makes them, give
    identical results that meet SPEC against the float64 reference."""
    inputs = Inputs(33, 2, 4, 32, 16, torch.bfloat16, device, layout="channel_first")
    conv, a, b, A_log, dt_bias = inputs.args()[:5]
    H, K, V = inputs.H, inputs.K, inputs.V
    positional = gdn_ext.fused_post_conv_prep(conv, a, b, A_log, dt_bias, H, K, V, True, False)
    keyword = gdn_ext.fused_post_conv_prep(
        conv_output=conv, a=a, b=b, A_log=A_log, dt_bias=dt_bias, num_k_heads=H,
        head_k_dim=K, head_v_dim=V, apply_l2norm=True, output_g_exp=False)
    defaults = gdn_ext.fused_post_conv_prep(conv, a, b, A_log, dt_bias, num_k_heads=H,
                                            head_k_dim=K, head_v_dim=V)
    check_against_reference(positional, inputs)
    for other in (keyword, defaults):
        for x, y in zip(positional, other):
            assert torch.equal(x, y)
    g_exp = gdn_ext.fused_post_conv_prep(conv, a, b, A_log, dt_bias, H, K, V,
                                         apply_l2norm=True, output_g_exp=True)
    check_against_reference(g_exp, inputs, True, True)


def _packed_run(layer, cache, steps, seq_lens, lines, device, dtype, gen_seed):
    """Prefill of sequences of seq_lens, then `steps` decode steps; the
    outputs of each call."""
    gen = torch.Generator(device="cpu").manual_seed(gen_seed)
    hidden = layer.in_proj_ba.in_features
    cache_indices = torch.tensor(lines, dtype=torch.int32, device=device)
    outs = []
    with torch.no_grad():
        x = torch.randn(sum(seq_lens), hidden, generator=gen).to(device, dtype)
        outs.append(layer.forward_packed(x, seq_lens, cache, cache_indices,
                                         torch.zeros(len(lines), dtype=torch.bool, device=device)))
        for _ in range(steps):
            x = torch.randn(len(lines), hidden, generator=gen).to(device, dtype)
            outs.append(layer.forward_packed(x, [1] * len(lines), cache, cache_indices,
                                             torch.ones(len(lines), dtype=torch.bool,
                                                        device=device)))
    return outs


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_packed_prefill_and_decode_fused_matches_unfused(device, dtype):
    """Three sequences of different lengths (one shorter than the conv),
    then decode steps, with a cache: op 2 against the conv in PyTorch +
    op 1, and against the conv + the unfused PyTorch chain."""
    layer, _ = _layer_pair(dtype, device, seed=torch.seed() % 2**31)
    seed = torch.seed() % 2**31
    runs = {}
    for name, fused_conv, fused_post_conv in (("op 2", True, True), ("conv + op 1", False, True),
                                              ("unfused", False, False)):
        layer.fused_conv, layer.fused_post_conv = fused_conv, fused_post_conv
        cache = gdn_ext.layers.GDNCache(layer, 6, device=device, dtype=dtype)
        outs = _packed_run(layer, cache, 4, [5, 2, 13], [4, 0, 2], device, dtype, seed)
        runs[name] = (outs, cache)
    bound = 1e-5 if dtype == torch.float32 else 2e-2
    fused_outs, fused_cache = runs["op 2"]
    for name in ("conv + op 1", "unfused"):
        outs, cache = runs[name]
        for step, (x, y) in enumerate(zip(fused_outs, outs)):
            assert torch.isfinite(x).all()
            assert _rel(x, y) <= bound, (name, step, _rel(x, y))
        # The conv cache holds copies of the inputs: the same bits either way.
        assert torch.equal(fused_cache.conv_states, cache.conv_states), name
        assert _rel(fused_cache.recurrent, cache.recurrent) <= bound, name


@pytest.mark.parametrize("device", DEVICES)
def test_packed_prefill_matches_the_batch_forward(device):
    """One sequence through forward_packed equals the [B, T] forward."""
    layer, _ = _layer_pair(torch.float32, device, seed=torch.seed() % 2**31)
    x = torch.randn(1, 17, 96, device=device)
    cache = gdn_ext.layers.GDNCache(layer, 2, device=device, dtype=torch.float32)
    with torch.no_grad():
        packed = layer.forward_packed(x[0], [17], cache,
                                      torch.tensor([1], dtype=torch.int32, device=device),
                                      torch.zeros(1, dtype=torch.bool, device=device))
        batch = layer(x)[0]
    assert _rel(packed, batch) <= 1e-5


@pytest.mark.parametrize("device", DEVICES)
def test_decode_step_compiles_fullgraph(device):
    """A decode step of the layer (op 2 mutating the cache) under
    torch.compile(fullgraph=True) matches eager, cache included."""
    torch._dynamo.reset()
    torch.manual_seed(torch.seed() % 2**31)
    layer = GatedDeltaNet(64, 2, 4, 16, 16, device=device)
    lines = torch.tensor([2, 0, 3], dtype=torch.int32, device=device)
    initial = torch.ones(3, dtype=torch.bool, device=device)
    caches = [gdn_ext.layers.GDNCache(layer, 4, device=device) for _ in range(2)]
    caches[0].conv_states.normal_()
    caches[0].recurrent.normal_()
    caches[1].conv_states.copy_(caches[0].conv_states)
    caches[1].recurrent.copy_(caches[0].recurrent)
    step = torch.compile(layer.forward_packed, fullgraph=True)
    with torch.no_grad():
        for _ in range(2):
            x = torch.randn(3, 64, device=device)
            eager = layer.forward_packed(x, [1, 1, 1], caches[0], lines, initial)
            compiled = step(x, [1, 1, 1], caches[1], lines, initial)
            torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
    assert torch.equal(caches[0].conv_states, caches[1].conv_states)
    torch.testing.assert_close(caches[1].recurrent, caches[0].recurrent, rtol=1e-4, atol=1e-5)

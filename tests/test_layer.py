"""The op inside model code: a Gated DeltaNet layer with the fused op equals
the same layer with the unfused PyTorch chain, traces under
torch.compile(fullgraph=True), and gdn_ext.fused_post_conv_prep takes every
call form vLLM uses for its function of the same name."""
import pytest
import torch

import gdn_ext
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

"""A Gated DeltaNet layer served the way an inference engine runs it: a
prefill of three sequences of different lengths packed back to back, then 16
decode steps, with a cache of conv and recurrent states per sequence. The
fused path runs torch.ops.gdn.causal_conv1d_post_conv_prep (op 2: the conv,
the cache update and the post-conv step in one kernel); the unfused path
runs the conv and the cache update in PyTorch, then the post-conv step.
Prints the relative difference of each call's output and of the caches.

    python examples/gdn_serving.py
"""
import torch

import gdn_ext
from gdn_ext.layers import GatedDeltaNet, GDNCache

SEQ_LENS = [37, 3, 120]  # one shorter than a decode step's conv window would need
CACHE_LINES = [5, 0, 2]  # the lines of a 6-line cache, in the engine's order
DECODE_STEPS = 16


def run(layer, device, dtype, fused):
    layer.fused_conv = fused
    cache = GDNCache(layer, 6, device=device, dtype=dtype)
    lines = torch.tensor(CACHE_LINES, dtype=torch.int32, device=device)
    gen = torch.Generator().manual_seed(1)
    hidden = layer.in_proj_ba.in_features
    outs = []
    with torch.no_grad():
        x = torch.randn(sum(SEQ_LENS), hidden, generator=gen).to(device, dtype)
        fresh = torch.zeros(len(SEQ_LENS), dtype=torch.bool, device=device)
        outs.append(layer.forward_packed(x, SEQ_LENS, cache, lines, fresh))
        continuing = torch.ones(len(SEQ_LENS), dtype=torch.bool, device=device)
        for _ in range(DECODE_STEPS):
            x = torch.randn(len(SEQ_LENS), hidden, generator=gen).to(device, dtype)
            outs.append(layer.forward_packed(x, [1] * len(SEQ_LENS), cache, lines, continuing))
    return outs, cache


def rel(x, y):
    return ((x.double() - y.double()).norm() / y.double().norm()).item()


def main():
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for dtype in (torch.float32, torch.bfloat16):
            torch.manual_seed(0)
            # A small Qwen3-Next-like layer: 4 key heads, 8 value heads (GQA 2), W = 4.
            layer = GatedDeltaNet(256, 4, 8, 64, 64, device=device, dtype=dtype)
            fused, fused_cache = run(layer, device, dtype, fused=True)
            unfused, unfused_cache = run(layer, device, dtype, fused=False)
            steps = [rel(f, u) for f, u in zip(fused, unfused)]
            print(f"{device:4} {str(dtype)[6:]:8} prefill {tuple(fused[0].shape)} then "
                  f"{DECODE_STEPS} decode steps {tuple(fused[1].shape)}: fused vs unfused "
                  f"relative difference prefill {steps[0]:.2e}, decode max {max(steps[1:]):.2e}; "
                  f"conv cache identical: "
                  f"{torch.equal(fused_cache.conv_states, unfused_cache.conv_states)}, "
                  f"recurrent state {rel(fused_cache.recurrent, unfused_cache.recurrent):.2e}")
    print("backends here:", {d: gdn_ext.available_backends(d) for d in devices})


if __name__ == "__main__":
    main()

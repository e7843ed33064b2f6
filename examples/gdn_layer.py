"""Runs a Gated DeltaNet layer whose post-conv step is
torch.ops.gdn.fused_post_conv_prep, on the CPU and (when present) on the GPU,
and compares it with the same layer on the unfused PyTorch chain.

    python examples/gdn_layer.py
"""
import torch

import gdn_ext
from gdn_ext.layers import GatedDeltaNet


def main():
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for dtype in (torch.float32, torch.bfloat16):
            torch.manual_seed(0)
            # A small Qwen3-Next-like layer: 4 key heads, 8 value heads (GQA 2).
            layer = GatedDeltaNet(256, 4, 8, 64, 64, device=device, dtype=dtype)
            x = torch.randn(2, 32, 256, device=device, dtype=dtype)
            with torch.no_grad():
                fused = layer(x)
                layer.fused_post_conv = False
                unfused = layer(x)
            rel = ((fused.double() - unfused.double()).norm() / unfused.double().norm()).item()
            print(f"{device:4} {str(dtype)[6:]:8} out {tuple(fused.shape)}  "
                  f"fused vs unfused relative difference {rel:.2e}")
    print("backends here:", {d: gdn_ext.available_backends(d) for d in devices})


if __name__ == "__main__":
    main()

"""Runs one call of the CUDA op a few times, for Nsight Compute or
compute-sanitizer to look at:

    ncu --clock-control none -k regex:channel_first python benchmarks/profile_case.py \
        --layout channel_first --L 32768
"""
import argparse

import torch

import gdn_ext  # noqa: F401
from bench_post_conv import DTYPES, make_inputs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shape", default="16,32,128,128", help="H,HV,K,V")
    p.add_argument("--L", type=int, default=8192)
    p.add_argument("--dtype", default="bf16", choices=list(DTYPES))
    p.add_argument("--layout", default="row_major", choices=["row_major", "channel_first"])
    p.add_argument("--calls", type=int, default=3)
    args = p.parse_args()
    H, HV, K, V = map(int, args.shape.split(","))
    dtype = DTYPES[args.dtype]
    inputs = make_inputs(args.L, H, HV, K, V, dtype, "cuda", args.layout)
    for _ in range(args.calls):
        torch.ops.gdn.fused_post_conv_prep(*inputs, H, K, V)
    torch.cuda.synchronize()
    print("ran", args)


if __name__ == "__main__":
    main()

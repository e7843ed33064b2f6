"""One op 2 call of a benchmark case, for a profiler (ncu) to attach to:
(H, HV, 128, 128) bf16 ((16,32) unless --shape), W = 4, prefill of T tokens
in --seqs sequences, or a decode step of B sequences.

    ncu -k regex:packed python benchmarks/profile_conv_case.py --T 32768
    ncu -k regex:packed python benchmarks/profile_conv_case.py --shape 2 6 --T 512
    ncu -k regex:decode python benchmarks/profile_conv_case.py --decode 512
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_conv_prep import case_inputs  # noqa: E402

import gdn_ext  # noqa: E402,F401


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--T", type=int, default=32768)
    p.add_argument("--seqs", type=int, default=1, help="prefill: this many sequences of T // seqs")
    p.add_argument("--decode", type=int, help="a decode step of this many sequences")
    p.add_argument("--shape", type=int, nargs=2, default=(16, 32), metavar=("H", "HV"))
    args = p.parse_args()
    gen = torch.Generator(device="cuda").manual_seed(0)
    T = args.decode or args.T
    H, HV = args.shape
    inputs = case_inputs(H, HV, 128, 128, T, T if args.decode else args.seqs, bool(args.decode),
                         torch.bfloat16, gen)
    for _ in range(2):
        torch.ops.gdn.causal_conv1d_post_conv_prep(*inputs, H, 128, 128)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()

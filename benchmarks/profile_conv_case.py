"""One op 2 call of a benchmark case, for a profiler (ncu) to attach to:
(16,32,128,128) bf16, W = 4, prefill of T tokens in one sequence, or a
decode step of B sequences.

    ncu -k regex:packed python benchmarks/profile_conv_case.py --T 32768
    ncu -k regex:packed python benchmarks/profile_conv_case.py --decode 512
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
    p.add_argument("--decode", type=int, help="a decode step of this many sequences")
    args = p.parse_args()
    gen = torch.Generator(device="cuda").manual_seed(0)
    T = args.decode or args.T
    inputs = case_inputs(16, 32, 128, 128, T, 1 if not args.decode else T, bool(args.decode),
                         torch.bfloat16, gen)
    for _ in range(2):
        torch.ops.gdn.causal_conv1d_post_conv_prep(*inputs, 16, 128, 128)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()

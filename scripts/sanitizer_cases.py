"""The representative subset that scripts/run_sanitizer.sh runs under each
compute-sanitizer tool: L that is no multiple of any block size, K and V
that are no multiple of the 16-byte vector width, channel-first and other
strided layouts, both flags, for the CUDA and Triton kernels of op 1; for
op 2, batches with empty and short sequences, pad slots and out-of-range
cache lines, both cache layouts, weights in float32 and in x's dtype, and
decode. Results are checked on the CPU against the float64 reference, so
the only GPU kernels are the ops' and the copies.

    python scripts/sanitizer_cases.py [--quick]
"""
import itertools
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from _conv_helpers import PAD, ConvInputs, check_conv_against_reference  # noqa: E402
from _helpers import Inputs, check_against_reference  # noqa: E402

import gdn_ext  # noqa: E402

SHAPES = [(16, 32, 128, 128), (3, 5, 36, 20), (1, 1, 1, 1), (2, 6, 17, 9)]
# 200: channel-first feature rows 16-byte aligned in bf16 and fp32 (the
# cp.async kernel), with a partial last tile; 37 and 300 bf16: rows that are
# not (the register kernel).
LENGTHS = [1, 37, 200, 300]
LAYOUTS = ["row_major", "channel_first", "padded", "offset", "ba_chunk", "strided_params"]
DTYPES = [torch.bfloat16, torch.float32]
# Op 2: (sequence lengths, cache lines): empty and shorter-than-the-conv
# sequences, a pad slot and lines past the cache; pure decode; a
# decode-shaped call (T <= 2B) with an empty and a two-token sequence, which
# the decode kernel hands to its general path; a decode step of 2,000
# sequences (distinct lines), whose decode work items take several tokens
# each (3-4 on 132 SMs); and a prefill of 800 tokens, where at (1,64,8,8)
# the prefill kernel's gate blocks outnumber its conv blocks and go behind
# them. The last shape takes the strided kernel.
CONV_BATCHES = [([0, 1, 2, 37, 3], [4, PAD, 0, 9, 2]), ([1] * 5, [5, 1, PAD, 3, -2]),
                ([1, 0, 2, 1], [3, 1, 0, 5]), ([1] * 1000 + [0] + [1] * 998 + [2], "permuted"),
                ([500, 300], [1, 2])]
CONV_SHAPES = [(4, 8, 64, 64), (1, 64, 8, 8), (3, 5, 36, 20)]
# The conv's weight and bias: float32, or bf16 as x (the packed kernels read
# those as packs, in kernels of their own).
CONV_WEIGHTS = [torch.float32, torch.bfloat16]


def main():
    quick = "--quick" in sys.argv
    backends = ["cuda"] + (["triton"] if gdn_ext.ops.backend_unavailable_reason(
        "triton", "cuda") is None else [])
    cases = 0
    for backend, shape, L, layout, dtype in itertools.product(
            backends, SHAPES, LENGTHS, LAYOUTS, DTYPES):
        if quick and (L != 37 or dtype != torch.bfloat16):
            continue
        x = Inputs(L, *shape, dtype, "cuda", layout=layout, param_dtype=torch.bfloat16)
        flags = (cases % 2 == 0, cases % 3 == 0)  # apply_l2norm, output_g_exp
        out = gdn_ext.fused_post_conv_prep(*x.args(*flags), backend=backend)
        host = Inputs.of(*(t.cpu() for t in x.args()[:5]), x.H, x.K, x.V)
        check_against_reference([o.cpu() for o in out], host, *flags)
        cases += 1
    for backend, (lengths, lines), shape, x_layout, state_layout, weight_dtype in itertools.product(
            backends, CONV_BATCHES, CONV_SHAPES, ["row_major", "channel_first"], ["dnw", "wd"],
            CONV_WEIGHTS):
        if quick and (shape == CONV_SHAPES[-1] or x_layout != "row_major"):
            continue
        c = ConvInputs(lengths, *shape, 4, torch.bfloat16, "cuda", x_layout=x_layout,
                       state_layout=state_layout, lines=lines, weight_dtype=weight_dtype,
                       initial=[i % 3 != 1 for i in range(len(lengths))],
                       num_lines=6 if isinstance(lines, list) else None)
        states = c.fresh_states()
        out = gdn_ext.causal_conv1d_post_conv_prep(*c.args(states), backend=backend)
        host = ConvInputs.__new__(ConvInputs)
        host.__dict__.update({k: (v.cpu() if isinstance(v, torch.Tensor) else v)
                              for k, v in c.__dict__.items()})
        check_conv_against_reference([o.cpu() for o in out], states.cpu(), host,
                                     host.conv_states)
        cases += 1
    torch.cuda.synchronize()
    print(f"sanitizer cases: {cases} op calls checked ({', '.join(backends)})")


if __name__ == "__main__":
    main()

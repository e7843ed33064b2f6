"""Back-to-back calls on one stream, the second reading what the first wrote
last. The CUDA kernels are programmatic dependent launches: a kernel may start
while the previous one still runs, and must not read its inputs before it has
waited for that kernel (griddepcontrol.wait). A read placed above the wait (by
the code, or by the compiler, as it does with __ldg) sees memory the allocator
handed back from an earlier iteration, and the outputs then miss the
reference."""
import pytest
import torch

from _helpers import Inputs, check_against_reference, requires_gpu

# The second call reads the first call's g as its conv_output (float32, 32
# features = 2*8 + 16) and its beta as a and b: its last rows, which the
# first call's last blocks write while the second call's blocks may already be
# starting.
FIRST = (1, 32, 64, 64)
SECOND_H, SECOND_K, SECOND_V = 1, 8, 16
SECOND_L = 16


@requires_gpu
@pytest.mark.parametrize("layout", ["row_major", "channel_first"])
@pytest.mark.parametrize("L", [1, 16, 300, 65536])
def test_call_reads_what_the_previous_call_wrote(layout, L):
    op = torch.ops.gdn.fused_post_conv_prep.default
    # Everything else the second call needs is made up front, so that no
    # other kernel runs between the two.
    firsts = [Inputs(L, *FIRST, torch.bfloat16, "cuda") for _ in range(10)]
    params = [(torch.randn(1, device="cuda"), torch.randn(1, device="cuda")) for _ in firsts]
    torch.cuda.synchronize()
    rows = slice(L - min(L, SECOND_L), L)
    for first, (A_log, dt_bias) in zip(firsts, params):
        _, _, _, g, beta = op(*first.args())
        conv = (g if layout == "row_major" else g.view(32, L).T)[rows]
        a, b = beta[rows, :1], beta[rows, 1:2]
        out = op(conv, a, b, A_log, dt_bias, SECOND_H, SECOND_K, SECOND_V)
        torch.cuda.synchronize()
        check_against_reference(out, Inputs.of(conv, a, b, A_log, dt_bias,
                                               SECOND_H, SECOND_K, SECOND_V))

"""The op inside a captured CUDA graph: replays after the inputs' contents
change give the new correct outputs (nothing is baked in at capture)."""
import pytest
import torch

from _helpers import Inputs, check_against_reference, device_for, requires_gpu
from gdn_ext import _library

SHAPE = (4, 8, 64, 48)


@requires_gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("layout", ["row_major", "channel_first", "ba_chunk"])
@pytest.mark.parametrize("L", [1, 300])
def test_graph_replay_after_inputs_change(backend, layout, L):
    device_for(backend)
    x = Inputs(L, *SHAPE, torch.bfloat16, "cuda", layout=layout)
    op = (torch.ops.gdn.fused_post_conv_prep.default if backend == "cuda"
          else _library.post_conv_prep_triton)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        op(*x.args())  # Triton compiles outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = op(*x.args())
    for _ in range(3):
        fresh = Inputs(L, *SHAPE, torch.bfloat16, "cuda", layout=layout)
        for name in ("conv", "a", "b", "A_log", "dt_bias"):
            getattr(x, name).copy_(getattr(fresh, name))
        for o in out:
            o.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        check_against_reference(out, x)

"""Two GPUs: the op runs on its inputs' device, not the current one, and
leaves the current device as it was; inputs split across devices raise the
named error."""
import pytest
import torch

from _helpers import Inputs, check_against_reference, device_for
from gdn_ext import fused_post_conv_prep

COUNT = torch.cuda.device_count() if torch.cuda.is_available() else 0
requires_two_gpus = pytest.mark.skipif(COUNT < 2, reason=f"needs two GPUs (this machine has {COUNT})")


@requires_two_gpus
@pytest.mark.parametrize("backend", ["cuda", "triton", "auto"])
@pytest.mark.parametrize("layout", ["row_major", "channel_first"])
def test_inputs_on_the_other_gpu(backend, layout):
    device_for("reference" if backend == "auto" else backend)
    with torch.cuda.device(0):
        x = Inputs(300, 4, 8, 64, 48, torch.bfloat16, "cuda:1", layout=layout)
        torch.cuda.synchronize(1)
        out = fused_post_conv_prep(*x.args(), backend=backend)
        assert torch.cuda.current_device() == 0
        assert all(o.device == torch.device("cuda:1") for o in out)
        torch.cuda.synchronize(1)
        check_against_reference(out, x)


@requires_two_gpus
@pytest.mark.parametrize("backend", ["cuda", "triton", "auto"])
@pytest.mark.parametrize("which", [1, 2, 3, 4])
def test_inputs_split_across_gpus(backend, which):
    device_for("reference" if backend == "auto" else backend)
    args = list(Inputs(5, 2, 4, 16, 8, torch.float32, "cuda:1").args())
    args[which] = args[which].to("cuda:0")
    name = ["conv_output", "a", "b", "A_log", "dt_bias"][which]
    with pytest.raises((RuntimeError, ValueError), match=f"one device.*{name} is on cuda:0"):
        fused_post_conv_prep(*args, backend=backend)

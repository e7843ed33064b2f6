import sys, torch, gdn_ext
sys.path.insert(0, "tests")
from _helpers import Inputs
for dev in ["cpu", "cuda"]:
    x = Inputs(37, 2, 4, 32, 16, torch.bfloat16, dev)
    args = list(x.args()); args[5] = 0
    try:
        torch.ops.gdn.fused_post_conv_prep(*args)
    except Exception as e:
        print(dev, "raised", type(e).__name__, str(e)[:100], flush=True)
    args = list(x.args()); args[0] = args[0].unsqueeze(0)
    try:
        torch.ops.gdn.fused_post_conv_prep(*args)
    except Exception as e:
        print(dev, "raised", type(e).__name__, str(e)[:100], flush=True)

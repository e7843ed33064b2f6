"""The CPU kernel runs on every thread torch is given (through
torch::stable::parallel_for, torch's own thread pool). A kernel that ran on
one thread would still give right answers: nothing but this test notices.
The check: while only the op runs, at least two threads of the process
accumulate CPU time (Linux's per-thread counters, in clock ticks)."""
import os
import subprocess
import sys

import pytest
import torch

SCRIPT = r"""
import os, torch, gdn_ext
torch.set_num_threads(2)
H, HV, K, V, L = 16, 32, 128, 128, 4096
gen = torch.Generator().manual_seed(0)
conv = torch.randn(L, 2 * H * K + HV * V, generator=gen)
a, b = torch.randn(L, HV, generator=gen), torch.randn(L, HV, generator=gen)
A_log, dt_bias = torch.rand(HV, generator=gen), torch.randn(HV, generator=gen)
op = torch.ops.gdn.fused_post_conv_prep
op(conv, a, b, A_log, dt_bias, H, K, V, True, True)

def ticks():
    out = {}
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out[tid] = int(fields[11]) + int(fields[12])  # utime + stime
    return out

before = ticks()
for _ in range(20):
    op(conv, a, b, A_log, dt_bias, H, K, V, True, True)
after = ticks()
print(sorted(after[t] - before.get(t, 0) for t in after))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/task")
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two CPUs")
@pytest.mark.skipif(not torch.backends.openmp.is_available(),
                    reason="torch was built without OpenMP")
def test_cpu_kernel_uses_every_thread():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, check=True).stdout
    per_thread = eval(out.strip().splitlines()[-1])
    # 20 calls move about 1.4 GB of float32: a second or more of CPU time.
    # The busiest thread's share shows the work was split, not only run.
    busy = [t for t in per_thread if t >= max(per_thread) // 4]
    assert max(per_thread) >= 10 and len(busy) >= 2, \
        f"CPU ticks per thread while the op ran: {per_thread}"

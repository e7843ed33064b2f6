"""The op's CUDA kernels are programmatic dependent launches: a kernel may
start while the kernel before it on the stream still runs, and must read
nothing before it has waited for that kernel (griddepcontrol.wait). Here the
kernel before the op writes the op's inputs late: it lets its dependents launch
at once, waits, and only then copies the inputs into place over NaN bytes. A
read placed above the wait, by the code or by the compiler (as it does with
__ldg loads), sees the NaNs."""
import functools

import pytest
import torch

from _helpers import Inputs, check_against_reference, requires_gpu

DELAY_NS = 200_000
SHAPE = (2, 4, 64, 32)


@functools.cache
def _late_copy_kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def late_copy(src, dst, n, delay_ns, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        lane = tl.arange(0, BLOCK)
        start = tl.inline_asm_elementwise(
            "griddepcontrol.launch_dependents; mov.u64 $0, %globaltimer;", "=l,r", [lane],
            dtype=tl.int64, is_pure=False, pack=1)
        now = start
        while tl.min(now - start) < delay_ns:
            now = tl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l,r", [lane],
                                            dtype=tl.int64, is_pure=False, pack=1)
        mask = offs < n
        tl.store(dst + offs, tl.load(src + offs, mask=mask), mask=mask)

    def copy(src, dst):
        block = 1024
        late_copy[(triton.cdiv(src.numel(), block),)](src, dst, src.numel(), DELAY_NS, BLOCK=block)
    return copy


def _storage_bytes(t):
    return torch.empty(0, dtype=torch.uint8, device=t.device).set_(t.untyped_storage())


def _late_inputs(x):
    """The five inputs' storages back to back in one byte buffer (`fresh`),
    and views with the inputs' sizes and strides into a NaN-filled buffer of
    the same layout (`target`) that the late copy fills."""
    tensors = (x.conv, x.a, x.b, x.A_log, x.dt_bias)
    offsets, total = [], 0
    for t in tensors:
        offsets.append(total)
        total += -(-t.untyped_storage().nbytes() // 256) * 256
    fresh = torch.empty(total, dtype=torch.uint8, device="cuda")
    target = torch.full((total,), 0xFF, dtype=torch.uint8, device="cuda")  # NaN in every dtype
    views = []
    for t, off in zip(tensors, offsets):
        raw = _storage_bytes(t)
        fresh[off:off + raw.numel()].copy_(raw)
        esize = t.element_size()
        views.append(target[off:off + raw.numel()].view(t.dtype).as_strided(
            t.shape, t.stride(), off // esize + t.storage_offset()))
    return fresh, target, views


@requires_gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("layout", ["row_major", "channel_first", "offset"])
@pytest.mark.parametrize("L", [1, 16, 300, 4096])
def test_op_reads_nothing_before_the_previous_kernel_ends(L, layout, dtype):
    pytest.importorskip("triton")
    if torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("programmatic dependent launch needs sm_90 or later")
    late_copy = _late_copy_kernel()
    H, HV, K, V = SHAPE
    x = Inputs(L, H, HV, K, V, dtype, "cuda", layout=layout)
    fresh, target, views = _late_inputs(x)
    late_copy(fresh, target)  # compiles the copy outside the timed pair
    target.fill_(0xFF)
    torch.cuda.synchronize()
    late_copy(fresh, target)
    out = torch.ops.gdn.fused_post_conv_prep.default(*views, H, K, V)
    torch.cuda.synchronize()
    check_against_reference(out, Inputs.of(*views, H, K, V))

"""Past 2^31 elements: L * (2HK + HV*V) > 2^31 needs 64-bit index math. The
rows on both sides of element 2^31 and the last rows are checked against the
float64 reference, for row-major and channel-first input."""
import pytest
import torch

from _helpers import Inputs, check_against_reference, device_for, poisoned, requires_gpu
from gdn_ext import fused_post_conv_prep

H, HV, K, V = 16, 32, 128, 128
D = 2 * H * K + HV * V  # 8192
L = 263_144             # L * D = 2,155,675,648 > 2^31


@requires_gpu
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("layout", ["row_major", "channel_first"])
def test_past_2_31_elements(backend, layout):
    device_for(backend)
    assert L * D > 2**31
    need = 2 * L * D * 2 + 8 * L * HV * 2  # bf16 conv and q/k/v, poison included
    if torch.cuda.mem_get_info()[0] < 1.2 * need:
        pytest.skip(f"needs {need / 2**30:.1f} GiB of free GPU memory")
    gen = torch.Generator(device="cuda").manual_seed(1234)
    if layout == "channel_first":
        conv = torch.randn(D, L, device="cuda", dtype=torch.bfloat16, generator=gen).T
    else:
        conv = torch.randn(L, D, device="cuda", dtype=torch.bfloat16, generator=gen)
    a = torch.randn(L, HV, device="cuda", generator=gen) * 3
    b = torch.randn(L, HV, device="cuda", generator=gen) * 3
    A_log = torch.rand(HV, device="cuda", generator=gen) * 2
    dt_bias = torch.randn(HV, device="cuda", generator=gen)
    full = Inputs.of(conv, a, b, A_log, dt_bias, H, K, V)
    out = poisoned(lambda: fused_post_conv_prep(*full.args(), backend=backend), full)
    boundary = 2**31 // D  # the row holding element 2^31 of a row-major conv
    for rows in (slice(0, 8), slice(boundary - 40, boundary + 40), slice(L - 64, L)):
        part = Inputs.of(conv[rows], a[rows], b[rows], A_log, dt_bias, H, K, V)
        check_against_reference([o[rows] for o in out], part)

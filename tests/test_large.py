"""Past 2^31 elements: L * (2HK + HV*V) > 2^31 needs 64-bit index math. The
rows on both sides of element 2^31 and the last rows are checked against the
float64 reference, for row-major and channel-first input (op 1), and for a
batch whose second sequence lies past element 2^31 (op 2)."""
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


@requires_gpu
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_conv_prep_past_2_31_elements(backend):
    """Op 2 over T * D > 2^31: two sequences, the second continuing from its
    cache line and lying wholly past element 2^31. The rows around element
    2^31 and the second sequence are checked against the float64 reference,
    and both cache lines bit for bit."""
    from _conv_helpers import ConvInputs, check_conv_against_reference
    from gdn_ext import causal_conv1d_post_conv_prep
    device_for(backend)
    W, tail = 4, 200
    need = 2 * L * D * 2 + 8 * L * HV * 2
    if torch.cuda.mem_get_info()[0] < 1.2 * need:
        pytest.skip(f"needs {need / 2**30:.1f} GiB of free GPU memory")
    gen = torch.Generator(device="cuda").manual_seed(4321)
    big = ConvInputs.__new__(ConvInputs)
    big.H, big.HV, big.K, big.V, big.W, big.D, big.T = H, HV, K, V, W, D, L
    big.x = torch.randn(L, D, device="cuda", dtype=torch.bfloat16, generator=gen)
    big.conv_weight = torch.randn(D, W, device="cuda", generator=gen) * 0.5
    big.conv_bias = torch.randn(D, device="cuda", generator=gen) * 0.3
    big.conv_states = torch.randn(3, D, W - 1, device="cuda", dtype=torch.bfloat16,
                                  generator=gen)
    big.query_start_loc = torch.tensor([0, L - tail, L], dtype=torch.int32, device="cuda")
    big.cache_indices = torch.tensor([2, 0], dtype=torch.int32, device="cuda")
    big.has_initial_state = torch.tensor([False, True], device="cuda")
    big.a = torch.randn(L, HV, device="cuda", generator=gen) * 3
    big.b = torch.randn(L, HV, device="cuda", generator=gen) * 3
    big.A_log = torch.rand(HV, device="cuda", generator=gen) * 2
    big.dt_bias = torch.randn(HV, device="cuda", generator=gen)
    states = big.conv_states.clone()
    out = causal_conv1d_post_conv_prep(*big.args(states), backend=backend)

    def part(rows, prior):
        """Rows `rows` of the first sequence (or the second) as a one-sequence
        call whose cache line holds the W-1 inputs before them."""
        p = ConvInputs.__new__(ConvInputs)
        p.__dict__.update(big.__dict__)
        p.x, p.a, p.b = big.x[rows], big.a[rows], big.b[rows]
        p.T = p.x.shape[0]
        p.query_start_loc = torch.tensor([0, p.T], dtype=torch.int32, device="cuda")
        p.cache_indices = torch.tensor([0], dtype=torch.int32, device="cuda")
        p.has_initial_state = torch.tensor([True], device="cuda")
        p.conv_states = prior[None].contiguous()
        return p

    boundary = 2**31 // D  # the row holding element 2^31
    rows = slice(boundary - 40, boundary + 40)
    inside = part(rows, big.x[boundary - 40 - (W - 1):boundary - 40].T)
    check_conv_against_reference([o[rows] for o in out], None, inside, inside.conv_states)
    last = slice(L - tail, L)
    second = part(last, big.conv_states[0])
    after = states[0:1].clone()
    check_conv_against_reference([o[last] for o in out], after, second, second.conv_states)
    # The first sequence's line: its last W-1 inputs.
    assert torch.equal(states[2], big.x[L - tail - (W - 1):L - tail].T)
    assert torch.equal(states[1], big.conv_states[1])  # untouched

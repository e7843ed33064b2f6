"""Op 2 (causal_conv1d_post_conv_prep) inputs in every layout SPEC.md accepts,
and the comparison of a backend's outputs and cache lines with the float64
reference under SPEC.md's op 2 bounds."""
import torch

import gdn_ext
from _helpers import FLT_MIN, _ulps_apart, assert_f32_close, poisoned, ulp

PAD = -1


class ConvInputs:
    """One set of op 2 arguments for sequences of the given lengths, packed
    back to back. The values are fresh random numbers.

    x_layout: "row_major", "channel_first" (the transposed view of a [D, T]
        buffer), "padded" (rows padded to a larger stride), "offset" (not
        16-byte aligned).
    state_layout: "dnw" ([N, D, W-1] contiguous), "wd" (the transposed view
        of [N, W-1, D], as vLLM keeps it), "strided" (every other line of a
        larger buffer, taps strided).
    lines: "permuted" (distinct random lines), "identity" (cache_indices
        None), or a list of line numbers (PAD and out-of-range values allowed).
    initial: "mixed", "all", "none" (has_initial_state None) or a list.
    """

    def __init__(self, lengths, H, HV, K, V, W, dtype, device, *, x_layout="row_major",
                 state_layout="dnw", lines="permuted", initial="mixed", bias=True,
                 weight_dtype=torch.float32, weight_layout="contiguous", num_lines=None,
                 gen=None):
        gen = gen or torch.Generator().manual_seed(torch.seed() % 2**31)
        self.lengths = list(lengths)
        self.H, self.HV, self.K, self.V, self.W = H, HV, K, V, W
        B, T = len(self.lengths), sum(self.lengths)
        D = 2 * H * K + HV * V
        self.T, self.B, self.D = T, B, D

        def randn(*shape, scale=1.0):
            return torch.randn(*shape, generator=gen) * scale

        if x_layout == "channel_first":
            x = randn(D, T).to(dtype).to(device).T
        elif x_layout == "padded":
            x = randn(T, D + 24).to(dtype).to(device)[:, :D]
        elif x_layout == "offset":
            x = randn(T * D + 1).to(dtype).to(device)[1:].view(T, D)
        else:
            x = randn(T, D).to(dtype).to(device)
        # Weights of the size conv1d's initialisation gives (|w| ~ 1/sqrt(W)).
        if weight_layout == "transposed":
            weight = randn(W, D, scale=W ** -0.5).to(weight_dtype).to(device).T
        else:
            weight = randn(D, W, scale=W ** -0.5).to(weight_dtype).to(device)
        self.conv_bias = randn(D, scale=0.3).to(weight_dtype).to(device) if bias else None
        N = num_lines if num_lines is not None else B + 3
        if state_layout == "wd":
            states = randn(N, W - 1, D).to(dtype).to(device).transpose(1, 2)
        elif state_layout == "strided":
            states = randn(2 * N, D, 2 * (W - 1)).to(dtype).to(device)[::2, :, ::2]
        else:
            states = randn(N, D, W - 1).to(dtype).to(device)
        starts = [0]
        for n in self.lengths:
            starts.append(starts[-1] + n)
        self.query_start_loc = torch.tensor(starts, dtype=torch.int32, device=device)
        if lines == "identity":
            self.cache_indices = None
        elif lines == "permuted":
            order = torch.randperm(N, generator=gen)[:B]
            self.cache_indices = order.to(torch.int32).to(device)
        else:
            self.cache_indices = torch.tensor(lines, dtype=torch.int32, device=device)
        if initial == "none":
            self.has_initial_state = None
        elif initial == "all":
            self.has_initial_state = torch.ones(B, dtype=torch.bool, device=device)
        elif initial == "mixed":
            self.has_initial_state = (torch.rand(B, generator=gen) < 0.6).to(device)
        else:
            self.has_initial_state = torch.tensor(initial, dtype=torch.bool, device=device)
        self.a = (randn(T, HV) * 3).to(dtype).to(device)
        self.b = (randn(T, HV) * 3).to(dtype).to(device)
        self.A_log = torch.empty(HV).uniform_(0, 16, generator=gen).clamp_min(1).log().to(device)
        self.dt_bias = randn(HV).to(device)
        self.x, self.conv_weight, self.conv_states = x, weight, states

    # What _helpers.poisoned reads: the tokens and the activation input.
    L = property(lambda self: self.T)
    conv = property(lambda self: self.x)

    def args(self, states=None, apply_l2norm=True, output_g_exp=False):
        """The op's positional arguments (up to output_g_exp)."""
        return (self.x, self.conv_weight, self.conv_bias,
                self.conv_states if states is None else states, self.query_start_loc,
                self.cache_indices, self.has_initial_state, self.a, self.b, self.A_log,
                self.dt_bias, self.H, self.K, self.V, apply_l2norm, output_g_exp)

    def fresh_states(self):
        """A copy of the cache with the same strides (each call mutates its own)."""
        copy = torch.empty_strided(self.conv_states.shape, self.conv_states.stride(),
                                   dtype=self.conv_states.dtype, device=self.conv_states.device)
        # empty_strided of a sliced view's strides may leave holes; copy_ fills the view.
        copy.copy_(self.conv_states)
        return copy


def run_poisoned(fn, inputs):
    """fn() on NaN-poisoned output memory (_helpers.poisoned)."""
    return poisoned(fn, inputs)


def assert_states_equal(got, expected, what="conv_states"):
    bits = {torch.float32: torch.int32}.get(got.dtype, torch.int16)
    diff = (got.contiguous().view(bits) != expected.contiguous().view(bits))
    assert not diff.any(), f"{what}: {diff.sum().item()} elements differ bitwise"


def check_conv_against_reference(outputs, states_after, inputs, states_before, apply_l2norm=True,
                                 output_g_exp=False, silu=True):
    """Every output and the cache after one call against the float64
    reference on the same inputs (SPEC.md, op 2 "Accuracy")."""
    T, H, HV, K, V = inputs.T, inputs.H, inputs.HV, inputs.K, inputs.V
    dt = inputs.x.dtype
    q, k, v, g, beta = outputs
    for name, t, shape, dtype in (("q", q, (T, H, K), dt), ("k", k, (T, H, K), dt),
                                  ("v", v, (T, HV, V), dt), ("g", g, (T, HV), torch.float32),
                                  ("beta", beta, (T, HV), torch.float32)):
        assert tuple(t.shape) == shape and t.dtype == dtype, (name, t.shape, t.dtype)
        assert t.is_contiguous(), f"{name} is not contiguous"
    args = list(inputs.args(states_before, apply_l2norm, False))  # g as log decay: exp below
    (rq, rk, _, rg, rbeta), y64, magnitude, new_states = \
        gdn_ext.reference_causal_conv1d_post_conv_prep(*args, silu=silu)
    if states_after is not None:  # None: the cache is checked by the caller
        assert_states_equal(states_after, new_states)
    y = y64.to(dt)  # the reference's conv output, rounded once
    cancel = 4e-6 * magnitude  # what cancellation in the float32 sum may cost

    # v: within 1 ulp of the rounded reference, or within the cancellation term.
    yv, y64v = y[:, 2 * H * K:].reshape(T, HV, V), y64[:, 2 * H * K:].reshape(T, HV, V)
    ok = (_ulps_apart(v, yv) <= 1) | ((v.double() - y64v).abs() <= cancel[:, 2 * H * K:].reshape(T, HV, V))
    assert ok.all(), f"v: {(~ok).sum().item()} of {v.numel()} elements out of bounds"

    # q, k: SPEC's 2 ulp (4e-6 relative in fp32), or the cancellation term
    # times the head's L2 scale. A conv value that lands next to a rounding
    # midpoint may round to the neighbour of the reference's y (the 1 ulp v
    # is allowed); carried through the scale that is up to 2 ulp of q when q
    # sits lower in its binade than y, plus q's own rounding: so also allowed
    # is one ulp of y times the scale plus one ulp of q (benchmarks/NOTES.md,
    # op 2 accuracy).
    for name, out, ref, cols in (("q", q, rq, slice(0, H * K)), ("k", k, rk, slice(H * K, 2 * H * K))):
        yh = y[:, cols].reshape(T, H, K).double()
        scale = (torch.rsqrt((yh * yh).sum(-1, keepdim=True) + 1e-6) if apply_l2norm
                 else torch.ones_like(yh[..., :1]))
        head_cancel = cancel[:, cols].reshape(T, H, K) * scale
        err = (out.double() - ref).abs()
        if dt == torch.float32:
            bound = 4e-6 * ref.abs() + 1e-7
        else:
            bound = 2 * ulp(ref, dt)
        flip = ulp(yh, dt) * scale + ulp(ref, dt)
        ok = (err <= bound) | (err <= head_cancel + ulp(ref, dt)) | (err <= flip)
        assert ok.all(), (f"{name}: {(~ok).sum().item()} of {out.numel()} elements out of bounds; "
                          f"worst err {err[~ok].max().item():.3g}")
    if output_g_exp:
        assert_f32_close(g, torch.exp(rg), 1e-6 * rg.abs().clamp_min(1), "exp(g)")
    else:
        assert_f32_close(g, rg, 1e-6, "g")
    assert_f32_close(beta, rbeta, 1e-6, "beta")


__all__ = ["PAD", "ConvInputs", "FLT_MIN", "assert_states_equal", "check_conv_against_reference",
           "run_poisoned"]

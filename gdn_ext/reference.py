"""PyTorch implementations of the ops: the float64 references the tests
measure every backend against, and the unfused chain that model code runs
without this extension (split -> contiguous -> l2norm -> gating)."""
import torch

from ._checks import check_args
from ._conv_checks import check_conv_args


def softplus_f64(x):
    """softplus in float64 without cancellation: max(x, 0) + log1p(exp(-|x|))."""
    return x.clamp_min(0) + torch.log1p(torch.exp(-x.abs()))


def reference_post_conv_prep(conv_output, a, b, A_log, dt_bias, num_k_heads, head_k_dim,
                             head_v_dim, apply_l2norm=True, output_g_exp=False):
    """The op evaluated in float64; returns float64 (q, k, v, g, beta).

    The gate is evaluated at the float32 value of x = a + dt_bias, the sum the
    kernels form, so the comparison measures softplus/exp and not the rounding
    of that sum (SPEC.md, Accuracy)."""
    L, HV = check_args(conv_output, a, b, A_log, dt_bias, num_k_heads, head_k_dim, head_v_dim)
    H, K, V = num_k_heads, head_k_dim, head_v_dim
    x64 = conv_output.double()
    q = x64[:, : H * K].reshape(L, H, K)
    k = x64[:, H * K: 2 * H * K].reshape(L, H, K)
    v = x64[:, 2 * H * K:].reshape(L, HV, V).clone(memory_format=torch.contiguous_format)
    if apply_l2norm:
        q = q * torch.rsqrt((q * q).sum(-1, keepdim=True) + 1e-6)
        k = k * torch.rsqrt((k * k).sum(-1, keepdim=True) + 1e-6)
    x = (a.float() + dt_bias.float()).double()
    g = -torch.exp(A_log.double()) * softplus_f64(x)
    if output_g_exp:
        g = torch.exp(g)
    beta = torch.sigmoid(b.double())
    fresh = dict(memory_format=torch.contiguous_format)
    return q.clone(**fresh), k.clone(**fresh), v, g.clone(**fresh), beta.clone(**fresh)


def reference_backend(conv_output, a, b, A_log, dt_bias, num_k_heads, head_k_dim, head_v_dim,
                      apply_l2norm=True, output_g_exp=False):
    """The float64 reference rounded once to the op's output dtypes: the
    "reference" backend, and the CPU implementation when no compiled library
    is present. Copies (v always, q/k without l2norm) keep the input's bits."""
    q, k, v, g, beta = reference_post_conv_prep(conv_output, a, b, A_log, dt_bias, num_k_heads,
                                                head_k_dim, head_v_dim, apply_l2norm,
                                                output_g_exp)
    L, dtype = conv_output.shape[0], conv_output.dtype
    H, K = num_k_heads, head_k_dim

    def copy(cols, shape):
        return conv_output[:, cols].reshape(shape).clone(memory_format=torch.contiguous_format)

    if apply_l2norm:
        q, k = q.to(dtype).contiguous(), k.to(dtype).contiguous()
    else:
        q = copy(slice(0, H * K), (L, H, K))
        k = copy(slice(H * K, 2 * H * K), (L, H, K))
    v = copy(slice(2 * H * K, None), v.shape)
    return q, k, v, g.float().contiguous(), beta.float().contiguous()


def unfused_post_conv_prep(conv_output, a, b, A_log, dt_bias, num_k_heads, head_k_dim,
                           head_v_dim, apply_l2norm=True, output_g_exp=False):
    """What model code does without the fused op: six or more kernels and
    several round trips of the activation through memory."""
    H, K, V = num_k_heads, head_k_dim, head_v_dim
    L, HV = conv_output.shape[0], A_log.shape[0]
    q, k, v = torch.split(conv_output, [H * K, H * K, HV * V], dim=-1)
    q = q.reshape(L, H, K).contiguous()
    k = k.reshape(L, H, K).contiguous()
    v = v.reshape(L, HV, V).contiguous()
    if apply_l2norm:
        q = (q.float() * torch.rsqrt(q.float().square().sum(-1, keepdim=True) + 1e-6)).to(q.dtype)
        k = (k.float() * torch.rsqrt(k.float().square().sum(-1, keepdim=True) + 1e-6)).to(k.dtype)
    g = -A_log.float().exp() * torch.nn.functional.softplus(a.float() + dt_bias.float())
    if output_g_exp:
        g = g.exp()
    beta = b.float().sigmoid()
    return q, k, v, g, beta


# ---------------------------------------------------------------------------
# Op 2: causal_conv1d_post_conv_prep.

def _sequences(query_start_loc, cache_indices, has_initial_state, num_lines, pad_slot_id):
    """(start, end, cache line or None, continues from the cache line) of each
    sequence, as SPEC.md's op 2 reads them."""
    starts = query_start_loc.tolist()
    B = len(starts) - 1
    lines = cache_indices.tolist() if cache_indices is not None else list(range(B))
    initial = has_initial_state.tolist() if has_initial_state is not None else [False] * B
    for i in range(B):
        c = lines[i]
        valid = c != pad_slot_id and 0 <= c < num_lines
        yield starts[i], starts[i + 1], (c if valid else None), bool(initial[i]) and valid


def reference_causal_conv1d(x, conv_weight, conv_bias, conv_states, query_start_loc,
                            cache_indices=None, has_initial_state=None, silu=True,
                            pad_slot_id=-1):
    """The causal conv (+ SiLU) of op 2 in float64, mutating nothing.

    Returns (y64, magnitude, new_states): the float64 conv output [T, D]; the
    float64 sum |bias| + sum_j |w_j * window_j| per element, which bounds
    what cancellation in the float32 sum can cost (SPEC.md); and a copy of
    conv_states with each sequence's cache line updated."""
    T, D = x.shape
    W = conv_weight.shape[1]
    w = conv_weight.double()
    bias = conv_bias.double() if conv_bias is not None else x.new_zeros(D, dtype=torch.float64)
    y64 = x.new_zeros(T, D, dtype=torch.float64)
    magnitude = torch.zeros_like(y64)
    new_states = conv_states.clone()
    for s, e, line, initial in _sequences(query_start_loc, cache_indices, has_initial_state,
                                          conv_states.shape[0], pad_slot_id):
        n = e - s
        if n <= 0:
            continue
        prior = (conv_states[line].double() if initial
                 else x.new_zeros(D, W - 1, dtype=torch.float64))
        window = torch.cat([prior, x[s:e].double().T], dim=1)  # [D, W-1+n]
        acc = bias[:, None].expand(D, n).clone()
        mag = bias.abs()[:, None].expand(D, n).clone()
        for j in range(W):
            term = w[:, j:j + 1] * window[:, j:j + n]
            acc += term
            mag += term.abs()
        y64[s:e] = (acc * torch.sigmoid(acc) if silu else acc).T
        magnitude[s:e] = mag.T
        if line is not None:
            # The window holds x's and the old state's values exactly.
            new_states[line] = window[:, n:].to(conv_states.dtype)
    return y64, magnitude, new_states


def reference_causal_conv1d_post_conv_prep(x, conv_weight, conv_bias, conv_states,
                                           query_start_loc, cache_indices, has_initial_state,
                                           a, b, A_log, dt_bias, num_k_heads, head_k_dim,
                                           head_v_dim, apply_l2norm=True, output_g_exp=False,
                                           silu=True, pad_slot_id=-1):
    """Op 2 in float64, mutating nothing: the conv in float64, y rounded once
    to x's dtype (what an unfused layer stores), then op 1's float64
    reference on y. Returns ((q, k, v, g, beta) float64, y64 (the conv output
    before that rounding), magnitude, new_states)."""
    check_conv_args(x, conv_weight, conv_bias, conv_states, query_start_loc, cache_indices,
                    has_initial_state, a, b, A_log, dt_bias, num_k_heads, head_k_dim, head_v_dim)
    y64, magnitude, new_states = reference_causal_conv1d(
        x, conv_weight, conv_bias, conv_states, query_start_loc, cache_indices,
        has_initial_state, silu, pad_slot_id)
    outputs = reference_post_conv_prep(y64.to(x.dtype), a, b, A_log, dt_bias, num_k_heads,
                                       head_k_dim, head_v_dim, apply_l2norm, output_g_exp)
    return outputs, y64, magnitude, new_states


def reference_conv_backend(x, conv_weight, conv_bias, conv_states, query_start_loc,
                           cache_indices, has_initial_state, a, b, A_log, dt_bias, num_k_heads,
                           head_k_dim, head_v_dim, apply_l2norm=True, output_g_exp=False,
                           silu=True, pad_slot_id=-1):
    """Op 2's "reference" backend (and its CPU implementation where no
    compiled library is present): the float64 reference rounded once to the
    output dtypes; conv_states updated in place."""
    check_conv_args(x, conv_weight, conv_bias, conv_states, query_start_loc, cache_indices,
                    has_initial_state, a, b, A_log, dt_bias, num_k_heads, head_k_dim, head_v_dim)
    y64, _, new_states = reference_causal_conv1d(x, conv_weight, conv_bias, conv_states,
                                                 query_start_loc, cache_indices,
                                                 has_initial_state, silu, pad_slot_id)
    conv_states.copy_(new_states)
    return reference_backend(y64.to(x.dtype), a, b, A_log, dt_bias, num_k_heads, head_k_dim,
                             head_v_dim, apply_l2norm, output_g_exp)

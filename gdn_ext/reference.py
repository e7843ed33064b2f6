"""PyTorch implementations of the op: the float64 reference the tests measure
every backend against, and the unfused chain that model code runs without
this extension (split -> contiguous -> l2norm -> gating)."""
import torch

from ._checks import check_args


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

"""A Gated DeltaNet layer (the prefill path of Qwen3-Next / Qwen3.5 style
layers) built on torch.ops.gdn.fused_post_conv_prep:

    hidden -> in_proj -> mixed_qkv, z, b, a
    mixed_qkv -> causal depthwise conv1d + SiLU (channel-first, as the conv
                 kernels produce it) -> fused_post_conv_prep -> q, k, v, g, beta
    q, k, v, g, beta -> gated delta rule (float32 state) -> gated RMSNorm(z)
                     -> out_proj

`fused_post_conv=False` swaps the op for the unfused PyTorch chain, which is
what model code runs without this extension.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .reference import unfused_post_conv_prep


def gated_delta_rule(q, k, v, g, beta, scale):
    """The recurrent gated delta rule of one sequence, state in float32.

    q, k: [T, H, K]; v: [T, HV, V]; g (log decay), beta: [T, HV]. Value head j
    reads key head j // (HV // H). Returns o: [T, HV, V] in float32."""
    T, H, K = q.shape
    HV, V = v.shape[1:]
    rep = HV // H
    q = q.float().repeat_interleave(rep, dim=1) * scale
    k = k.float().repeat_interleave(rep, dim=1)
    v = v.float()
    state = q.new_zeros(HV, K, V)
    out = []
    for t in range(T):
        state = state * g[t].exp()[:, None, None]
        # Delta rule: write beta * (v - what the state already predicts for k).
        delta = (v[t] - torch.einsum("hk,hkv->hv", k[t], state)) * beta[t][:, None]
        state = state + k[t][:, :, None] * delta[:, None, :]
        out.append(torch.einsum("hk,hkv->hv", q[t], state))
    return torch.stack(out)


class GatedDeltaNet(nn.Module):
    """Gated DeltaNet attention over a batch of sequences [B, T, hidden_size]."""

    def __init__(self, hidden_size, num_k_heads, num_v_heads, head_k_dim, head_v_dim,
                 conv_kernel_size=4, norm_eps=1e-6, fused_post_conv=True, device=None,
                 dtype=None):
        super().__init__()
        if num_v_heads % num_k_heads:
            raise ValueError(f"num_v_heads ({num_v_heads}) must be a multiple of num_k_heads "
                             f"({num_k_heads})")
        factory = dict(device=device, dtype=dtype)
        self.H, self.HV, self.K, self.V = num_k_heads, num_v_heads, head_k_dim, head_v_dim
        self.conv_dim = 2 * num_k_heads * head_k_dim + num_v_heads * head_v_dim
        self.value_dim = num_v_heads * head_v_dim
        self.norm_eps = norm_eps
        self.fused_post_conv = fused_post_conv
        self.in_proj_qkvz = nn.Linear(hidden_size, self.conv_dim + self.value_dim, bias=False,
                                      **factory)
        self.in_proj_ba = nn.Linear(hidden_size, 2 * num_v_heads, bias=False, **factory)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, conv_kernel_size,
                                groups=self.conv_dim, bias=False, **factory)
        f32 = dict(device=device, dtype=torch.float32)
        self.A_log = nn.Parameter(torch.empty(num_v_heads, **f32).uniform_(1, 16).log())
        self.dt_bias = nn.Parameter(torch.empty(num_v_heads, **f32).uniform_(-1, 1))
        self.norm_weight = nn.Parameter(torch.ones(head_v_dim, **factory))
        self.out_proj = nn.Linear(self.value_dim, hidden_size, bias=False, **factory)

    def post_conv(self, conv_output, a, b):
        """q, k, v, g, beta of one sequence from its [T, conv_dim] conv output."""
        prep = torch.ops.gdn.fused_post_conv_prep if self.fused_post_conv \
            else unfused_post_conv_prep
        return prep(conv_output, a, b, self.A_log, self.dt_bias, self.H, self.K, self.V)

    def forward(self, hidden_states):
        B, T, _ = hidden_states.shape
        mixed_qkv, z = self.in_proj_qkvz(hidden_states).split([self.conv_dim, self.value_dim], -1)
        b, a = self.in_proj_ba(hidden_states).chunk(2, dim=-1)
        # Causal depthwise conv over time, channel-first as conv kernels run it;
        # transposing back gives a [B, T, conv_dim] view with unit token stride.
        x = F.pad(mixed_qkv.transpose(1, 2), (self.conv1d.kernel_size[0] - 1, 0))
        conv_output = F.silu(self.conv1d(x)).transpose(1, 2)
        outputs = []
        for i in range(B):  # each conv_output[i] is a channel-first [T, conv_dim] view
            q, k, v, g, beta = self.post_conv(conv_output[i], a[i], b[i])
            o = gated_delta_rule(q, k, v, g, beta, scale=self.K ** -0.5)
            # Gated RMSNorm over each value head, gated by SiLU(z).
            o = o * torch.rsqrt(o.square().mean(-1, keepdim=True) + self.norm_eps)
            o = o * self.norm_weight.float() * F.silu(z[i].float().view(T, self.HV, self.V))
            outputs.append(o.reshape(T, self.value_dim).to(hidden_states.dtype))
        return self.out_proj(torch.stack(outputs))

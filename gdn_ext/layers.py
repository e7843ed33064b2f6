"""A Gated DeltaNet layer (Qwen3-Next / Qwen3.5 style) built on the gdn ops:

    hidden -> in_proj -> mixed_qkv, z, b, a
    mixed_qkv -> causal depthwise conv1d + SiLU -> post-conv prep -> q, k, v, g, beta
    q, k, v, g, beta -> gated delta rule (float32 state) -> gated RMSNorm(z)
                     -> out_proj

Two entry points:

* forward(hidden [B, T, hidden]): a batch of equal-length sequences with no
  cache (training-style prefill). The conv runs channel-first in PyTorch and
  torch.ops.gdn.fused_post_conv_prep (op 1) takes its output as a view.
* forward_packed(hidden [T, hidden], seq_lens, cache, ...): sequences of
  different lengths packed back to back, as a serving engine runs them, with
  a GDNCache holding each sequence's conv state and recurrent state between
  calls: prefill, then decode steps (every sequence one token).
  torch.ops.gdn.causal_conv1d_post_conv_prep (op 2) does the conv, the cache
  update and the prep in one kernel.

Flags: `fused_conv=False` runs the conv and the cache update in PyTorch and
then the post-conv step; `fused_post_conv=False` swaps op 1 for the unfused
PyTorch chain (what model code runs without this extension).
"""
import itertools

import torch
import torch.nn.functional as F
from torch import nn

from .reference import unfused_post_conv_prep


def gated_delta_rule(q, k, v, g, beta, scale, state=None):
    """The recurrent gated delta rule of one sequence, state in float32.

    q, k: [T, H, K]; v: [T, HV, V]; g (log decay), beta: [T, HV]. Value head j
    reads key head j // (HV // H). state: [HV, K, V] float32 to continue from
    (None: zeros). Returns (o [T, HV, V] float32, the final state)."""
    T, H, K = q.shape
    HV, V = v.shape[1:]
    rep = HV // H
    q = q.float().repeat_interleave(rep, dim=1) * scale
    k = k.float().repeat_interleave(rep, dim=1)
    v = v.float()
    state = q.new_zeros(HV, K, V) if state is None else state
    out = []
    for t in range(T):
        state = state * g[t].exp()[:, None, None]
        # Delta rule: write beta * (v - what the state already predicts for k).
        delta = (v[t] - torch.einsum("hk,hkv->hv", k[t], state)) * beta[t][:, None]
        state = state + k[t][:, :, None] * delta[:, None, :]
        out.append(torch.einsum("hk,hkv->hv", q[t], state))
    return torch.stack(out), state


class GDNCache:
    """What a layer keeps per sequence between calls, in num_lines lines:
    conv_states [N, conv_dim, W-1] (the last W-1 conv inputs, x's dtype) and
    recurrent [N, HV, K, V] (the delta-rule state, float32)."""

    def __init__(self, layer, num_lines, device=None, dtype=None):
        W = layer.conv1d.kernel_size[0]
        self.conv_states = torch.zeros(num_lines, layer.conv_dim, W - 1, device=device,
                                       dtype=dtype)
        self.recurrent = torch.zeros(num_lines, layer.HV, layer.K, layer.V, device=device,
                                     dtype=torch.float32)


class GatedDeltaNet(nn.Module):
    """Gated DeltaNet attention: forward() over a batch of equal-length
    sequences [B, T, hidden_size]; forward_packed() over packed sequences of
    different lengths with a GDNCache (prefill and decode)."""

    def __init__(self, hidden_size, num_k_heads, num_v_heads, head_k_dim, head_v_dim,
                 conv_kernel_size=4, norm_eps=1e-6, fused_post_conv=True, fused_conv=True,
                 device=None, dtype=None):
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
        self.fused_conv = fused_conv
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
            o, _ = gated_delta_rule(q, k, v, g, beta, scale=self.K ** -0.5)
            outputs.append(self.gated_norm(o, z[i]).to(hidden_states.dtype))
        return self.out_proj(torch.stack(outputs))

    def gated_norm(self, o, z):
        """RMSNorm over each value head of o [T, HV, V], gated by SiLU(z)."""
        T = o.shape[0]
        o = o * torch.rsqrt(o.square().mean(-1, keepdim=True) + self.norm_eps)
        o = o * self.norm_weight.float() * F.silu(z.float().view(T, self.HV, self.V))
        return o.reshape(T, self.value_dim)

    def conv_and_prep(self, mixed_qkv, a, b, query_start_loc, seq_lens, cache, cache_indices,
                      has_initial_state):
        """q, k, v, g, beta of packed sequences, updating cache.conv_states."""
        weight = self.conv1d.weight[:, 0]  # [D, 1, W] -> [D, W]
        if self.fused_conv:
            return torch.ops.gdn.causal_conv1d_post_conv_prep(
                mixed_qkv, weight, None, cache.conv_states, query_start_loc, cache_indices,
                has_initial_state, a, b, self.A_log, self.dt_bias, self.H, self.K, self.V)
        # The unfused path: each sequence's window [prior | its inputs] through
        # PyTorch's conv (channel-first), the new cache line from the window's
        # last W-1 columns, then the post-conv step on the conv output.
        W = weight.shape[1]
        ys, start = [], 0
        for i, n in enumerate(seq_lens):
            line = cache_indices[i:i + 1].long()
            prior = cache.conv_states.index_select(0, line)[0]
            prior = torch.where(has_initial_state[i], prior, torch.zeros_like(prior))
            window = torch.cat([prior, mixed_qkv[start:start + n].T], dim=1)  # [D, W-1+n]
            y = F.silu(F.conv1d(window[None].float(), weight[:, None].float(),
                                groups=self.conv_dim))
            ys.append(y[0].T.to(mixed_qkv.dtype))
            cache.conv_states.index_copy_(0, line, window[None, :, n:])
            start += n
        return self.post_conv(torch.cat(ys), a, b)

    def forward_packed(self, hidden_states, seq_lens, cache, cache_indices, has_initial_state):
        """Sequences of the given lengths packed back to back in hidden_states
        [T, hidden]: sequence i continues from cache line cache_indices[i]
        where has_initial_state[i], and leaves its conv and recurrent states
        there. Decode is seq_lens = [1] * B with has_initial_state all true.
        seq_lens is a Python list (the host knows the batch), so the layer
        traces under torch.compile(fullgraph=True)."""
        T = hidden_states.shape[0]
        mixed_qkv, z = self.in_proj_qkvz(hidden_states).split([self.conv_dim, self.value_dim], -1)
        b, a = self.in_proj_ba(hidden_states).chunk(2, dim=-1)
        query_start_loc = torch.tensor([0] + list(itertools.accumulate(seq_lens)),
                                       dtype=torch.int32, device=hidden_states.device)
        q, k, v, g, beta = self.conv_and_prep(mixed_qkv, a, b, query_start_loc, seq_lens, cache,
                                              cache_indices, has_initial_state)
        outputs, start = [], 0
        for i, n in enumerate(seq_lens):
            # index_select / index_copy_ with a one-element index tensor: no
            # host read of the line number (which would break the graph).
            line = cache_indices[i:i + 1].long()
            state = cache.recurrent.index_select(0, line)[0]
            state = torch.where(has_initial_state[i], state, torch.zeros_like(state))
            seq = slice(start, start + n)
            o, state = gated_delta_rule(q[seq], k[seq], v[seq], g[seq], beta[seq],
                                        scale=self.K ** -0.5, state=state)
            cache.recurrent.index_copy_(0, line, state[None])
            outputs.append(self.gated_norm(o, z[seq]))
            start += n
        return self.out_proj(torch.cat(outputs).to(hidden_states.dtype))

"""Argument checks of op 2, causal_conv1d_post_conv_prep, for the Python-side
implementations (fake, Triton, reference). They mirror
csrc/causal_conv_prep.cpp message for message; tests/test_conv_errors.py runs
every bad input through every backend to keep the two in step."""
from dataclasses import dataclass

import torch

from ._checks import ACTIVATION_DTYPES, check_feature_width, check_gate_shapes

OP = "gdn::causal_conv1d_post_conv_prep: "
_DTYPE_NAMES = "bfloat16, float16 or float32"
MAX_WIDTH = 4


def _fail(msg):
    raise ValueError(OP + msg)


@dataclass(frozen=True)
class ConvSizes:
    T: int   # tokens
    D: int   # features: 2*H*K + HV*V
    W: int   # conv taps
    B: int   # sequences
    N: int   # cache lines
    HV: int  # value heads


def check_conv_args(x, conv_weight, conv_bias, conv_states, query_start_loc, cache_indices,
                    has_initial_state, a, b, A_log, dt_bias, num_k_heads, head_k_dim,
                    head_v_dim):
    """Validates op 2's arguments (SPEC.md, op 2 "Inputs accepted"); returns
    its ConvSizes."""
    for name, value in (("num_k_heads", num_k_heads), ("head_k_dim", head_k_dim),
                        ("head_v_dim", head_v_dim)):
        if value <= 0:
            _fail(f"{name} must be >= 1, but got {value}")
    tensors = (("x", x, 2, "[T, 2*H*K + HV*V]"), ("conv_weight", conv_weight, 2, "[D, W]"),
               ("conv_bias", conv_bias, 1, "[D]"), ("conv_states", conv_states, 3, "[N, D, W-1]"),
               ("query_start_loc", query_start_loc, 1, "[B+1]"),
               ("cache_indices", cache_indices, 1, "[B]"),
               ("has_initial_state", has_initial_state, 1, "[B]"),
               ("a", a, 2, "[T, HV]"), ("b", b, 2, "[T, HV]"),
               ("A_log", A_log, 1, "[HV]"), ("dt_bias", dt_bias, 1, "[HV]"))
    present = [(name, t) for name, t, _, _ in tensors if t is not None]
    for name, t, dim, shape in tensors:
        if t is not None and t.dim() != dim:
            _fail(f"{name} must be a {dim}-D tensor {shape}, but got a {t.dim()}-D tensor "
                  f"of shape {list(t.shape)}")
    for name in ("x", "conv_weight", "conv_bias", "a", "b", "A_log", "dt_bias"):
        t = dict(present).get(name)
        if t is not None and t.dtype not in ACTIVATION_DTYPES:
            _fail(f"{name} must have dtype {_DTYPE_NAMES}, but got {t.dtype}")
    if conv_states.dtype != x.dtype:
        _fail(f"conv_states must have x's dtype {x.dtype}, but got {conv_states.dtype}")
    for name, t, want in (("query_start_loc", query_start_loc, torch.int32),
                          ("cache_indices", cache_indices, torch.int32),
                          ("has_initial_state", has_initial_state, torch.bool)):
        if t is not None and t.dtype != want:
            _fail(f"{name} must have dtype {want}, but got {t.dtype}")
    for name, t in present[1:]:
        if t.device != x.device:
            _fail(f"all tensors must be on one device: x is on {x.device} but {name} is on "
                  f"{t.device}")

    T = x.shape[0]
    D = check_feature_width(_fail, x, "x", A_log, num_k_heads, head_k_dim, head_v_dim)
    HV = A_log.shape[0]
    W = conv_weight.shape[1]
    if conv_weight.shape[0] != D or not 2 <= W <= MAX_WIDTH:
        _fail(f"conv_weight must have shape [D, W] with D = {D} and 2 <= W <= {MAX_WIDTH}, "
              f"but got {list(conv_weight.shape)}")
    if conv_bias is not None and tuple(conv_bias.shape) != (D,):
        _fail(f"conv_bias must have shape [D] = [{D}], but got {list(conv_bias.shape)}")
    if conv_states.shape[1] != D or conv_states.shape[2] != W - 1:
        _fail(f"conv_states must have shape [N, D, W-1] = [N, {D}, {W - 1}], but got "
              f"{list(conv_states.shape)}")
    B = query_start_loc.shape[0] - 1
    if B < 1:
        _fail(f"query_start_loc must have shape [B+1] with B >= 1, but got "
              f"{list(query_start_loc.shape)}")
    for name, t in (("cache_indices", cache_indices), ("has_initial_state", has_initial_state)):
        if t is not None and tuple(t.shape) != (B,):
            _fail(f"{name} must have shape [B] = [{B}], but got {list(t.shape)}")
    check_gate_shapes(_fail, a, b, dt_bias, T, "T", HV)
    return ConvSizes(T=T, D=D, W=W, B=B, N=conv_states.shape[0], HV=HV)


def validate_sequences(x, conv_states, query_start_loc, cache_indices, pad_slot_id):
    """The host-side checks of `validate=True` (one synchronisation): sequence
    bounds that start at 0, never decrease and end at T; cache lines in range
    or the pad value, and distinct."""
    T, N = x.shape[0], conv_states.shape[0]
    starts = query_start_loc.tolist()
    if starts[0] != 0 or starts[-1] != T:
        _fail(f"query_start_loc must start at 0 and end at T = {T}, but runs from {starts[0]} "
              f"to {starts[-1]}")
    for i, (s, e) in enumerate(zip(starts, starts[1:])):
        if e < s:
            _fail(f"query_start_loc must be non-decreasing, but entry {i + 1} ({e}) is below "
                  f"entry {i} ({s})")
    if cache_indices is None:
        lines = list(range(len(starts) - 1))
        if len(lines) > N:
            _fail(f"without cache_indices sequence i uses cache line i, but there are "
                  f"{len(lines)} sequences and {N} cache lines")
        return
    seen = {}
    for i, c in enumerate(cache_indices.tolist()):
        if c == pad_slot_id:
            continue
        if not 0 <= c < N:
            _fail(f"cache_indices[{i}] = {c} is neither a cache line in [0, {N}) nor "
                  f"pad_slot_id = {pad_slot_id}")
        if c in seen:
            _fail(f"cache_indices[{seen[c]}] and cache_indices[{i}] are both cache line {c}")
        seen[c] = i

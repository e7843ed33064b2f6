"""Every class of bad input to op 2 raises an error that names the
argument, on every backend and on meta tensors (the fake impl), without
writing anything or crashing."""
import pytest
import torch

from _conv_helpers import ConvInputs
from _helpers import device_for, requires_gpu
from gdn_ext import causal_conv1d_post_conv_prep

SHAPE = (2, 4, 16, 8)  # H, HV, K, V
X, WEIGHT, BIAS, STATES, QSL, LINES, INITIAL, A, B_, A_LOG, DT_BIAS, H, K, V = range(14)


def bad_cases():
    """(id, mutate(args list) -> None, words the message must contain)."""
    def setter(i, make):
        def mutate(args):
            args[i] = make(args)
        return mutate

    i32 = torch.int32
    return [
        ("x_3d", setter(X, lambda a: a[X][None]), ["x must be a 2-D"]),
        ("x_width", setter(X, lambda a: a[X][:, :-1]), ["x.size(1)", "2*H*K + HV*V"]),
        ("x_int", setter(X, lambda a: a[X].to(torch.int32)), ["x must have dtype"]),
        ("weight_1d", setter(WEIGHT, lambda a: a[WEIGHT][:, 0]), ["conv_weight must be a 2-D"]),
        ("weight_w5", setter(WEIGHT, lambda a: torch.cat([a[WEIGHT], a[WEIGHT][:, :1]], 1)),
         ["conv_weight must have shape [D, W]", "2 <= W <= 4"]),
        ("weight_w1", setter(WEIGHT, lambda a: a[WEIGHT][:, :1]), ["conv_weight", "2 <= W"]),
        ("weight_rows", setter(WEIGHT, lambda a: a[WEIGHT][:-1]), ["conv_weight must have shape"]),
        ("weight_f64", setter(WEIGHT, lambda a: a[WEIGHT].double()), ["conv_weight must have dtype"]),
        ("bias_size", setter(BIAS, lambda a: a[BIAS][:-1]), ["conv_bias must have shape [D]"]),
        ("bias_int", setter(BIAS, lambda a: a[BIAS].to(torch.int64)), ["conv_bias must have dtype"]),
        ("states_2d", setter(STATES, lambda a: a[STATES][0]), ["conv_states must be a 3-D"]),
        ("states_taps", setter(STATES, lambda a: a[STATES][:, :, :-1]),
         ["conv_states must have shape [N, D, W-1]"]),
        ("states_dtype", setter(STATES, lambda a: a[STATES].half()), ["conv_states must have x's dtype"]),
        ("qsl_int64", setter(QSL, lambda a: a[QSL].long()), ["query_start_loc must have dtype", "int32"]),
        ("qsl_2d", setter(QSL, lambda a: a[QSL][None]), ["query_start_loc must be a 1-D"]),
        ("qsl_no_sequence", setter(QSL, lambda a: a[QSL][:1]), ["query_start_loc", "B >= 1"]),
        ("lines_size", setter(LINES, lambda a: a[LINES][:-1]), ["cache_indices must have shape [B]"]),
        ("lines_int64", setter(LINES, lambda a: a[LINES].long()), ["cache_indices must have dtype"]),
        ("initial_int", setter(INITIAL, lambda a: a[INITIAL].to(i32)),
         ["has_initial_state must have dtype", "bool"]),
        ("initial_size", setter(INITIAL, lambda a: a[INITIAL][:1]),
         ["has_initial_state must have shape [B]"]),
        ("a_rows", setter(A, lambda a: a[A][:-1]), ["a must have shape [T, HV]"]),
        ("b_bool", setter(B_, lambda a: a[B_] > 0), ["b must have dtype"]),
        ("A_log_empty", setter(A_LOG, lambda a: a[A_LOG][:0]), ["A_log", "HV >= 1"]),
        ("dt_bias_size", setter(DT_BIAS, lambda a: a[DT_BIAS][:-1]), ["dt_bias must have shape [HV]"]),
        ("H_zero", setter(H, lambda a: 0), ["num_k_heads", ">= 1"]),
        ("V_negative", setter(V, lambda a: -8), ["head_v_dim", ">= 1"]),
    ]


def _args(device):
    inputs = ConvInputs([3, 4], *SHAPE, 4, torch.float32, device, initial="mixed")
    return list(inputs.args(inputs.fresh_states()))


@pytest.mark.parametrize("backend", ["cuda", "triton", "cpu", "reference"])
@pytest.mark.parametrize("case", bad_cases(), ids=lambda c: c[0])
def test_bad_input_names_the_argument(backend, case):
    device = device_for(backend)
    _, mutate, words = case
    args = _args(device)
    states = args[STATES].clone()
    mutate(args)
    with pytest.raises((RuntimeError, ValueError)) as info:
        causal_conv1d_post_conv_prep(*args, backend=backend)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    assert "causal_conv1d_post_conv_prep" in str(info.value)
    if args[STATES].shape == states.shape and args[STATES].dtype == states.dtype:
        assert torch.equal(args[STATES], states), "a rejected call wrote the cache"


@pytest.mark.parametrize("case", bad_cases(), ids=lambda c: c[0])
def test_bad_input_on_meta_tensors(case):
    _, mutate, words = case
    args = [t.to("meta") if isinstance(t, torch.Tensor) else t for t in _args("cpu")]
    mutate(args)
    with pytest.raises((RuntimeError, ValueError)) as info:
        torch.ops.gdn.causal_conv1d_post_conv_prep(*args)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@requires_gpu
@pytest.mark.parametrize("backend", ["auto", "cuda", "triton"])
@pytest.mark.parametrize("which", [WEIGHT, STATES, QSL, LINES, INITIAL, A])
def test_tensors_on_different_devices(backend, which):
    args = _args("cuda")
    args[which] = args[which].cpu()
    names = {WEIGHT: "conv_weight", STATES: "conv_states", QSL: "query_start_loc",
             LINES: "cache_indices", INITIAL: "has_initial_state", A: "a"}
    with pytest.raises((RuntimeError, ValueError), match=f"one device.*{names[which]} is on cpu"):
        causal_conv1d_post_conv_prep(*args, backend=backend)


def test_unknown_and_unavailable_backends():
    args = _args("cpu")
    with pytest.raises(ValueError, match="causal_conv1d_post_conv_prep: unknown backend 'fast'"):
        causal_conv1d_post_conv_prep(*args, backend="fast")
    # CPU tensors: the cuda backend says why it cannot run them (or that it is absent).
    with pytest.raises(ValueError, match="backend 'cuda'.*(x is on cpu|not available)"):
        causal_conv1d_post_conv_prep(*args, backend="cuda")

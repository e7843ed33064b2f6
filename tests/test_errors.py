"""Every class of bad input in SPEC.md raises an error that names the
argument, on every backend, without writing anything or crashing."""
import pytest
import torch

from _helpers import HAS_GPU, Inputs, device_for, requires_gpu
from gdn_ext import fused_post_conv_prep

H, HV, K, V, L = 2, 4, 16, 8, 5


def bad_cases():
    """(id, mutate(args list) -> None, words the message must contain)."""
    def setter(i, make):
        def mutate(args):
            args[i] = make(args)
        return mutate

    return [
        ("conv_3d", setter(0, lambda a: a[0].unsqueeze(0)), ["conv_output", "2-D"]),
        ("conv_width", setter(0, lambda a: a[0][:, :-1]), ["conv_output.size(1)", "2*H*K + HV*V"]),
        ("a_1d", setter(1, lambda a: a[1][0]), ["a must be a 2-D"]),
        ("a_rows", setter(1, lambda a: a[1][:-1]), ["a must have shape [L, HV]"]),
        ("b_heads", setter(2, lambda a: a[2][:, :-1]), ["b must have shape [L, HV]"]),
        ("dt_bias_size", setter(4, lambda a: a[4][:-1]), ["dt_bias must have shape [HV]"]),
        ("A_log_2d", setter(3, lambda a: a[3][None]), ["A_log", "1-D"]),
        ("A_log_empty", setter(3, lambda a: a[3][:0]), ["A_log", "HV >= 1"]),
        ("conv_int", setter(0, lambda a: a[0].to(torch.int32)), ["conv_output", "dtype"]),
        ("conv_f64", setter(0, lambda a: a[0].double()), ["conv_output", "dtype"]),
        ("a_bool", setter(1, lambda a: a[1] > 0), ["a must have dtype"]),
        ("A_log_int", setter(3, lambda a: a[3].to(torch.int64)), ["A_log must have dtype"]),
        ("dt_bias_complex", setter(4, lambda a: a[4].to(torch.complex64)), ["dt_bias must have dtype"]),
        ("H_zero", setter(5, lambda a: 0), ["num_k_heads", ">= 1"]),
        ("K_negative", setter(6, lambda a: -16), ["head_k_dim", ">= 1"]),
        ("V_zero", setter(7, lambda a: 0), ["head_v_dim", ">= 1"]),
    ]


@pytest.mark.parametrize("backend", ["cuda", "triton", "cpu", "reference"])
@pytest.mark.parametrize("case", bad_cases(), ids=lambda c: c[0])
def test_bad_input_names_the_argument(backend, case):
    device = device_for(backend)
    _, mutate, words = case
    args = list(Inputs(L, H, HV, K, V, torch.float32, device).args())
    mutate(args)
    with pytest.raises((RuntimeError, ValueError)) as info:
        fused_post_conv_prep(*args, backend=backend)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize("case", bad_cases(), ids=lambda c: c[0])
def test_bad_input_on_meta_tensors(case):
    """The fake implementation (what torch.compile traces) checks the same."""
    _, mutate, words = case
    args = list(Inputs(L, H, HV, K, V, torch.float32, "cpu").args())
    args = [t.to("meta") if isinstance(t, torch.Tensor) else t for t in args]
    mutate(args)
    with pytest.raises((RuntimeError, ValueError)) as info:
        torch.ops.gdn.fused_post_conv_prep(*args)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize("backend", ["auto", "cuda", "triton"])
@pytest.mark.parametrize("which", [1, 2, 3, 4])
@requires_gpu
def test_tensors_on_different_devices(backend, which):
    device_for(backend if backend != "auto" else "reference")
    args = list(Inputs(L, H, HV, K, V, torch.float32, "cuda").args())
    args[which] = args[which].cpu()
    name = ["conv_output", "a", "b", "A_log", "dt_bias"][which]
    with pytest.raises((RuntimeError, ValueError), match=f"one device.*{name} is on cpu"):
        fused_post_conv_prep(*args, backend=backend)


def test_unknown_and_unavailable_backends():
    args = Inputs(L, H, HV, K, V, torch.float32, "cpu").args()
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        fused_post_conv_prep(*args, backend="fast")
    with pytest.raises(ValueError, match="backend 'cuda'"):
        fused_post_conv_prep(*args, backend="cuda")  # CPU tensors, or no CUDA kernel


@pytest.mark.skipif(HAS_GPU, reason="checks the error where no GPU is visible")
def test_cuda_backend_without_gpu_is_a_clear_error():
    with pytest.raises((RuntimeError, ValueError), match="backend 'cuda'|CUDA"):
        x = Inputs(L, H, HV, K, V, torch.float32, "cpu")
        fused_post_conv_prep(*x.args(), backend="cuda")

"""Bad input never crashes: seeded random combinations of wrong ranks,
sizes, dtypes (integers, bool, complex, float64, float8), devices (meta,
the other device) and head sizes go through every backend. Each gives one of
SPEC's errors, a RuntimeError or ValueError naming the op, and leaves the
inputs untouched; afterwards the device still computes a correct result
(no CUDA error has poisoned the context)."""
import random

import pytest
import torch

from _helpers import HAS_GPU, Inputs, check_against_reference, device_for
from gdn_ext import fused_post_conv_prep

INPUTS_PER_BACKEND = 2000
BAD_DTYPES = [torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64, torch.bool,
              torch.complex64, torch.complex128, torch.float64, torch.float8_e4m3fn,
              torch.float8_e5m2]
BAD_INTS = [0, -1, -7, 2**31, 2**40, 2**62]
NAMES = ["conv_output", "a", "b", "A_log", "dt_bias", "num_k_heads", "head_k_dim", "head_v_dim"]


def _bytes(t):
    return t.contiguous().reshape(-1).view(torch.uint8)


def mutate(args, rng, device):
    """Applies 1 to 3 random mutations to distinct arguments (so none undoes
    another), each invalid on its own; returns their description."""
    done = []
    for i in rng.sample(range(8), rng.randint(1, 3)):
        kind = "int" if i >= 5 else rng.choice(["rank", "size", "dtype", "device"])
        t = args[i]
        if kind == "int":
            args[i] = rng.choice(BAD_INTS)
        elif kind == "rank" or t.dim() == 0:  # a 0-D tensor has no size to change
            kind = "rank"
            args[i] = rng.choice([t[None]] +
                                 ([t.reshape(-1)[:1].reshape(())] if t.numel() else []) +
                                 ([t.reshape(-1)] if t.dim() == 2 else []) +
                                 ([t[:, None]] if t.dim() == 1 else []))
        elif kind == "size":
            delta = rng.choice([-1, 1, 3])
            dim = rng.randrange(t.dim())
            if delta < 0 and t.shape[dim] > 0:
                args[i] = t.narrow(dim, 0, t.shape[dim] - 1)
            else:
                pad = list(t.shape)
                pad[dim] = abs(delta)
                args[i] = torch.cat([t, torch.ones(pad, dtype=t.dtype, device=t.device)], dim)
        elif kind == "dtype":
            args[i] = t.to(rng.choice(BAD_DTYPES))
        else:
            others = ["meta"] + (["cpu"] if device != "cpu" else []) + \
                (["cuda"] if HAS_GPU and device == "cpu" else [])
            args[i] = t.to(rng.choice(others))
        done.append(f"{kind} of {NAMES[i]}")
    return ", ".join(done)


@pytest.mark.parametrize("backend", ["cuda", "triton", "cpu", "reference", "auto"])
def test_fuzz_bad_inputs(backend):
    device = "cuda" if backend == "cuda" or (backend in ("triton", "auto") and HAS_GPU) else "cpu"
    device_for(backend if backend != "auto" else "reference")
    if backend == "triton":
        device_for("triton")
    tried = 0
    for seed in range(INPUTS_PER_BACKEND):
        rng = random.Random(seed)
        inputs = Inputs(rng.randint(1, 9), rng.randint(1, 3), rng.randint(1, 5),
                        rng.randint(1, 20), rng.randint(1, 12), rng.choice(
                            [torch.bfloat16, torch.float16, torch.float32]), device)
        args = list(inputs.args())
        what = mutate(args, rng, device)
        before = [t.clone() for t in args[:5] if isinstance(t, torch.Tensor) and
                  t.device.type != "meta"]
        try:
            fused_post_conv_prep(*args, backend=backend)
        except (RuntimeError, ValueError) as exc:
            assert "fused_post_conv_prep" in str(exc), f"seed {seed} ({what}): {exc}"
        else:
            raise AssertionError(f"seed {seed} ({what}): no error")
        after = [t for t in args[:5] if isinstance(t, torch.Tensor) and t.device.type != "meta"]
        for x, y in zip(before, after):
            assert torch.equal(_bytes(x), _bytes(y)), f"seed {seed} ({what}): an input changed"
        tried += 1
    if device == "cuda":
        torch.cuda.synchronize()
    good = Inputs(33, 2, 4, 32, 16, torch.bfloat16, device, layout="channel_first")
    check_against_reference(fused_post_conv_prep(*good.args(), backend=backend), good)
    print(f"{backend}: {tried} bad inputs, each a named error")

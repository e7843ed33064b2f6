"""SPEC: a NaN or Inf in one row or head stays there. One planted in a q/k
head of one row changes that head of that row only; one in v changes that
element only; one in a or b changes only that (row, head)'s g or beta.
Everything else is bit-identical to the clean call."""
import pytest
import torch

from _helpers import Inputs, device_for
from gdn_ext import fused_post_conv_prep

L, H, HV, K, V = 37, 3, 6, 40, 24
NAMES = ("q", "k", "v", "g", "beta")


def _changed(clean, dirty):
    """Per output, a bool mask of the elements whose bits differ."""
    masks = []
    for x, y in zip(clean, dirty):
        bits = {torch.float32: torch.int32}.get(x.dtype, torch.int16)
        masks.append(x.view(bits) != y.view(bits))
    return masks


def _expected(shape_of, where):
    """Masks with True exactly at `where`: {output name: index tuple}."""
    masks = [torch.zeros(shape_of[n], dtype=torch.bool) for n in NAMES]
    for name, index in where.items():
        masks[NAMES.index(name)][index] = True
    return masks


@pytest.mark.parametrize("backend", ["cuda", "triton", "cpu"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")],
                         ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("target", ["q", "k", "v", "a", "b"])
@pytest.mark.parametrize("layout", ["row_major", "channel_first"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "f32"])
def test_nonfinite_stays_in_its_head(backend, value, target, layout, dtype):
    device = device_for(backend)
    x = Inputs(L, H, HV, K, V, dtype, device, layout=layout)
    clean = [t.cpu() for t in fused_post_conv_prep(*x.args(), backend=backend)]
    row, head, elem = 29, 1, 7
    if target in ("q", "k", "v"):
        base = {"q": head * K, "k": H * K + head * K, "v": 2 * H * K + head * V}[target]
        x.conv = x.conv.clone(memory_format=torch.preserve_format) if layout == "row_major" \
            else x.conv.T.contiguous().T
        x.conv[row, base + elem] = value
        width = K if target in "qk" else 1
        index = (row, head, slice(None)) if width == K else (row, head, elem)
    else:
        t = getattr(x, target).clone()
        t[row, head] = value
        setattr(x, target, t)
        index = (row, head)
    dirty = [t.cpu() for t in fused_post_conv_prep(*x.args(), backend=backend)]
    shapes = {"q": (L, H, K), "k": (L, H, K), "v": (L, HV, V), "g": (L, HV), "beta": (L, HV)}
    output = {"a": "g", "b": "beta"}.get(target, target)
    want = _expected(shapes, {output: index})
    got = _changed(clean, dirty)
    for name, w, g in zip(NAMES, want, got):
        outside = g & ~w
        assert not outside.any(), (f"{name}: {outside.sum().item()} elements outside the planted "
                                   f"head changed, first at {outside.nonzero()[0].tolist()}")
    # The planted head itself is no longer a finite, unchanged value.
    planted = dirty[NAMES.index(output)][index]
    assert not torch.isfinite(planted).all() or target in "ab", (output, planted)

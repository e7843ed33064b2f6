"""gdn_ext: the steps between a Gated DeltaNet layer's input projection and
its recurrence as exact, memory-bound kernels: torch.ops.gdn.fused_post_conv_prep
(op 1: conv output -> q, k, v, g, beta) and
torch.ops.gdn.causal_conv1d_post_conv_prep (op 2: the causal conv and op 1 in
one pass, with the conv-state cache)."""
from . import _library
from .conv_ops import causal_conv1d_post_conv_prep
from .ops import BACKENDS, available_backends, fused_post_conv_prep
from .reference import (reference_causal_conv1d_post_conv_prep, reference_post_conv_prep,
                        unfused_post_conv_prep)

HAS_COMPILED_LIBRARY = _library.HAS_COMPILED_LIBRARY
HAS_CUDA_KERNEL = _library.HAS_CUDA_KERNEL

__all__ = ["BACKENDS", "HAS_COMPILED_LIBRARY", "HAS_CUDA_KERNEL", "available_backends",
           "causal_conv1d_post_conv_prep", "fused_post_conv_prep",
           "reference_causal_conv1d_post_conv_prep", "reference_post_conv_prep",
           "unfused_post_conv_prep"]
__version__ = "0.2.0"

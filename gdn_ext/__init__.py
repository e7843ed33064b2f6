"""gdn_ext: the post-convolution step of Gated DeltaNet layers as one exact,
memory-bound kernel, registered as torch.ops.gdn.fused_post_conv_prep."""
from . import _library
from .ops import BACKENDS, available_backends, fused_post_conv_prep
from .reference import reference_post_conv_prep, unfused_post_conv_prep

HAS_COMPILED_LIBRARY = _library.HAS_COMPILED_LIBRARY
HAS_CUDA_KERNEL = _library.HAS_CUDA_KERNEL

__all__ = ["BACKENDS", "HAS_COMPILED_LIBRARY", "HAS_CUDA_KERNEL", "available_backends",
           "fused_post_conv_prep", "reference_post_conv_prep", "unfused_post_conv_prep"]
__version__ = "0.1.0"

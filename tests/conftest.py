import os

import torch

# Without a GPU the Triton kernel runs through its interpreter on CPU tensors.
# TRITON_INTERPRET is read when a kernel is decorated, so it is set before
# gdn_ext (and its Triton module) is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import gdn_ext  # noqa: E402,F401  (registers the op for every test module)

import os

import pytest
import torch

# Without a GPU the Triton kernel runs through its interpreter on CPU tensors.
# TRITON_INTERPRET is read when a kernel is decorated, so it is set before
# gdn_ext (and its Triton module) is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import gdn_ext  # noqa: E402,F401  (registers the op for every test module)

# Heavy tests run where a GPU is visible (the GPU round runs everything) or
# with GDN_TEST_SLOW=1; CI, which has no GPU, runs the rest.
RUN_SLOW = torch.cuda.is_available() or os.environ.get("GDN_TEST_SLOW") == "1"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: heavy; runs where a GPU is visible or with GDN_TEST_SLOW=1")


def pytest_collection_modifyitems(config, items):
    if RUN_SLOW:
        return
    skip = pytest.mark.skip(reason="slow: the GPU run runs it (here: GDN_TEST_SLOW=1)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)

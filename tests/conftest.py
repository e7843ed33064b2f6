import os

import pytest
import torch

# Without a GPU the Triton kernel runs through its interpreter on CPU tensors.
# TRITON_INTERPRET is read when a kernel is decorated, so it is set before
# gdn_ext (and its Triton module) is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import gdn_ext  # noqa: E402,F401  (registers the op for every test module)

# Under pytest-xdist every worker would otherwise size torch's thread pool
# and inductor's compile pool to every core: 16 workers ran 256 threads on
# the GPU machine's 16 cores, and a CPU torch.compile test took 250 s. Each
# worker gets its share of the cores, at least two threads so that the CPU
# kernels still run in parallel (test_cpu_threads checks that on its own).
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    torch.set_num_threads(max(2, (os.cpu_count() or 1) // _workers))
    import torch._inductor.config  # noqa: E402

    torch._inductor.config.compile_threads = 1

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


# GDN_TEST_TIMING_LOG=path: each test's start, then its duration, appended
# to that file as it happens (by the controlling process, which pytest-xdist
# sends every worker's reports to), so that a run cut short by a time limit
# still shows which tests took the time and which were still running.
# pytest's --durations prints only at the end.
TIMING_LOG = (None if os.environ.get("PYTEST_XDIST_WORKER")
              else os.environ.get("GDN_TEST_TIMING_LOG"))


def _log_timing(line):
    with open(TIMING_LOG, "a") as f:
        f.write(line + "\n")


def pytest_runtest_logstart(nodeid, location):
    if TIMING_LOG:
        _log_timing(f"start {nodeid}")


def pytest_runtest_logreport(report):
    if TIMING_LOG and report.when == "call":
        _log_timing(f"{report.duration:9.2f} {report.outcome} {report.nodeid}")

"""Test-session settings: hypothesis explores new examples locally and a fixed set in CI.

HYPOTHESIS_PROFILE=thorough draws 2000 examples per property instead of 150.
"""

import os

import pytest
import torch
from hypothesis import settings

# Without a GPU, the Triton engine's kernels run on CPU tensors in Triton's interpreter; it is
# read when the kernels are defined, so it is set before any test imports them.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Under pytest-xdist (`make test` runs `-n auto`) the workers share the cores: each worker's torch,
# and the processes its tests start, take only its share of them instead of all of them each.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    threads = max(1, len(os.sched_getaffinity(0)) // WORKERS)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)

settings.register_profile("dev", max_examples=150, deadline=None)
settings.register_profile("ci", max_examples=150, deadline=None, derandomize=True)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") == "true" else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture
def small_column_blocks(monkeypatch):
    """The Triton kernels' rows split into blocks of 4 columns (`launch.split_rows` halves a
    row's block down to MIN_BLOCK while the grid is small): several programs per row, the last
    partly masked, at the small sizes of the tests."""
    from lstmkit.engines.triton import launch

    monkeypatch.setattr(launch, "MIN_BLOCK", 4)
    launch.split_rows.cache_clear()
    yield
    monkeypatch.undo()
    launch.split_rows.cache_clear()

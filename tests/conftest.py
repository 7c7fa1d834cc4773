"""Test-session settings: hypothesis explores new examples locally and a fixed set in CI.

HYPOTHESIS_PROFILE=thorough draws 2000 examples per property instead of 150.
"""

import os

import torch
from hypothesis import settings

# Without a GPU, the Triton engine's kernels run on CPU tensors in Triton's interpreter; it is
# read when the kernels are defined, so it is set before any test imports them.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

settings.register_profile("dev", max_examples=150, deadline=None)
settings.register_profile("ci", max_examples=150, deadline=None, derandomize=True)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") == "true" else os.environ.get("HYPOTHESIS_PROFILE", "dev"))

"""The process-wide CPU settings the `lstmkit` command applies."""

import sys

import pytest
import torch

from lstmkit.runtime import tune_cpu_for_training


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_tuning_flushes_subnormals_and_keeps_freed_memory():
    applied = tune_cpu_for_training()
    assert applied == ["flush subnormal floats to zero", "keep freed memory in the process (glibc mallopt)"]
    tiny = torch.tensor([1e-30], dtype=torch.float32)
    assert (tiny * 1e-10).item() == 0.0, "1e-40 is subnormal in float32 and must flush to zero"

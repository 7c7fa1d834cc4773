"""The Triton engine (CUDA): the fused engine's loop with each step's point-wise work in one
Triton kernel, forward and backward, so a step is one recurrent product and one kernel.

Triton is optional (the `gpu` extra; CUDA builds of torch bring it). Without a GPU the
kernels run on CPU tensors under Triton's interpreter (`TRITON_INTERPRET=1`), which is how
the test suite proves them equal to the reference engine.
"""

from __future__ import annotations

import os

import torch

from lstmkit.cells import Cell
from lstmkit.extras import MissingExtra, require_extra
from lstmkit.engines.fused import FusedEngine, FusedKernel


def interpreting() -> bool:
    """Whether Triton runs its kernels on the CPU, in its interpreter: TRITON_INTERPRET read as
    Triton reads it (1, true, yes, on, y, in any case; `true` was taken for off here)."""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "yes", "on", "y")


class TritonEngine(FusedEngine):
    """FusedEngine's loop with Triton kernels."""

    name = "triton"

    def unavailable(self) -> str | None:
        try:
            require_extra("gpu", "engine='triton'")
        except MissingExtra as missing:
            return str(missing)
        return None

    def kernels(self) -> dict[str, type[FusedKernel]]:
        from lstmkit.engines.triton.kernels import TRITON_KERNELS

        return TRITON_KERNELS

    def unsupported(self, cell: Cell, device: torch.device | None, cell_steps: bool = False) -> str | None:
        reason = self.unavailable() or super().unsupported(cell, device, cell_steps)
        if reason is None and device is not None:
            reason = off_device(device)
        return reason


def off_device(device: torch.device) -> str | None:
    """Why the kernels cannot run on tensors of `device`, or None (a check cheap enough for
    every step of a cell module, whose triton and cell were checked when it was built)."""
    if device.type != "cuda" and not interpreting():
        return f"the Triton kernels run on CUDA tensors (on CPU only under TRITON_INTERPRET=1); got {device}"
    return None

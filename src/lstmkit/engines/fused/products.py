"""The matrix products of the fused loop, in the compute dtype, into buffers of the state dtype.

Without mixed precision both dtypes are the same and each product writes straight into its
buffer (`out=`, `addmm_`); with it, the operands are cast to the compute dtype and the result
is added or copied into the float32 buffer.
"""

from __future__ import annotations

import torch
from torch import Tensor


class Products:
    """`a @ b` for the fused loop; `b` (a weight) is already in the compute dtype."""

    def __init__(self, compute: torch.dtype, state: torch.dtype) -> None:
        self.compute, self.state, self.mixed = compute, state, compute != state

    def into(self, out: Tensor, a: Tensor, b: Tensor, bias: Tensor | None = None) -> None:
        """out = a @ b (+ bias)."""
        if self.mixed:
            product = a.to(self.compute) @ b
            if bias is None:
                out.copy_(product)
            else:
                torch.add(bias, product, out=out)
        elif bias is None:
            torch.mm(a, b, out=out)
        else:
            torch.addmm(bias, a, b, out=out)

    def accumulate(self, out: Tensor, a: Tensor, b: Tensor) -> None:
        """out += a @ b."""
        if self.mixed:
            out.add_(a.to(self.compute) @ b)
        else:
            out.addmm_(a, b)

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        """a @ b in the compute dtype (for weight gradients and the input's, after the loop)."""
        return a.to(self.compute) @ b.to(self.compute)

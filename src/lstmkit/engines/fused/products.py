"""The matrix products of the fused loop, in the compute dtype, into buffers of the state dtype.

Without mixed precision both dtypes are the same and each product writes straight into its
buffer (`out=`, `addmm_`); with it, the operands are cast to the compute dtype and the result
is added or copied into the float32 buffer.

The recurrent product multiplies one weight by a new state at every step. On CPU in float32
that weight is packed once per loop for MKL's packed sgemm (`Products.repeated`), which then
skips re-packing it at every step.
"""

from __future__ import annotations

import torch
from torch import Tensor

MKL_PACKING = torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")

# The fewest steps for which packing pays: it costs up to a millisecond per loop (the packed
# copy is 1.7–10 × the weight's size) and saves up to ~40 µs per product. Fused lstm, packed
# against unpacked (`python benchmarks/packing.py`, 2 threads, B 32, H 256–512): 0.80–0.88 ×
# at T 4, 0.95–0.97 × at T 10, 0.98–1.02 × at T 20, 1.02–1.08 × at T 32, 1.01–1.10 × at T 100.
PACKED_MIN_STEPS = 32


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

    def repeated(self, b: Tensor, rows: int, steps: int) -> RepeatedProduct | PackedProduct:
        """`a @ b` for `steps` matrices a of at most `rows` rows: packed for MKL where that
        pays (CPU, float32 without mixed precision, at least `PACKED_MIN_STEPS` steps)."""
        packable = (
            MKL_PACKING and b.device.type == "cpu" and b.dtype == torch.float32 and not self.mixed
            and steps >= PACKED_MIN_STEPS
        )
        return PackedProduct(b, rows) if packable else RepeatedProduct(self, b)


class RepeatedProduct:
    """`a @ b` for one b and many a, through `Products`."""

    def __init__(self, products: Products, b: Tensor) -> None:
        self.products, self.b = products, b

    def into(self, out: Tensor, a: Tensor, bias: Tensor | None = None) -> None:
        """out = a @ b (+ bias)."""
        self.products.into(out, a, self.b, bias)

    def accumulate(self, out: Tensor, a: Tensor) -> None:
        """out += a @ b."""
        self.products.accumulate(out, a, self.b)


class PackedProduct:
    """`RepeatedProduct`'s `into` and `accumulate`, with b packed once for MKL's packed sgemm
    (`cblas_sgemm_pack`, then `cblas_sgemm_compute` per product, through torch's
    `mkl::_mkl_linear`). The op returns a new tensor, so the result is then added or copied
    into `out`: one pass over B × 4H, small beside the product it speeds up."""

    def __init__(self, b: Tensor, rows: int) -> None:
        self.weight = b.t().contiguous()                   # nn.Linear's layout: (out, in)
        self.rows = rows
        self.packed = torch.ops.mkl._mkl_reorder_linear_weight(self.weight, rows)

    def product(self, a: Tensor) -> Tensor:
        """a @ b, a new tensor."""
        return torch.ops.mkl._mkl_linear(a, self.packed, self.weight, None, self.rows)

    def into(self, out: Tensor, a: Tensor, bias: Tensor | None = None) -> None:
        """out = a @ b (+ bias)."""
        if bias is None:
            out.copy_(self.product(a))
        else:
            torch.add(bias, self.product(a), out=out)

    def accumulate(self, out: Tensor, a: Tensor) -> None:
        """out += a @ b."""
        out.add_(self.product(a))

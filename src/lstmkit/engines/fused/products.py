"""The matrix products of the fused loop, in the compute dtype, into buffers of the state dtype.

Without mixed precision both dtypes are the same and each product writes straight into its
buffer (`out=`, `addmm_`); with it, the operands are cast to the compute dtype and the result
is added or copied into the float32 buffer: on CUDA by the product itself (cuBLAS multiplies
half-precision matrices into a float32 result and adds the buffer, `out_dtype=`), elsewhere
by a separate addition.

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

# torch's products of half-precision matrices into a float32 result (`mm`/`addmm` with
# `out_dtype=`, CUDA only): one cuBLAS call instead of a product, then an addition kernel, per
# step; the product reaches the float32 buffer unrounded. Measured on an H200 (BENCHMARKS.md, "GPU").
FLOAT32_RESULTS = "dtype_out" in torch.ops.aten.addmm.overloads()


class Products:
    """`a @ b` for the fused loop; `b` (a weight) is already in the compute dtype."""

    def __init__(self, compute: torch.dtype, state: torch.dtype) -> None:
        self.compute, self.state, self.mixed = compute, state, compute != state

    def float32_result(self, device: torch.device) -> bool:
        """Whether cuBLAS forms the products of the compute dtype in float32, the state dtype:
        under mixed precision with a float32 state, on CUDA."""
        return self.mixed and FLOAT32_RESULTS and device.type == "cuda" and self.state == torch.float32

    def into(self, out: Tensor, a: Tensor, b: Tensor, bias: Tensor | None = None) -> None:
        """out = a @ b (+ bias)."""
        if self.float32_result(out.device) and (bias is None or bias.dtype == torch.float32):
            if bias is None:
                torch.mm(a.to(self.compute), b, out_dtype=torch.float32, out=out)
            else:
                torch.addmm(bias, a.to(self.compute), b, out_dtype=torch.float32, out=out)
        elif self.mixed:
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
        if self.float32_result(out.device):
            torch.addmm(out, a.to(self.compute), b, out_dtype=torch.float32, out=out)
        elif self.mixed:
            out.add_(a.to(self.compute) @ b)
        else:
            out.addmm_(a, b)

    def product(self, a: Tensor, b: Tensor) -> Tensor:
        """a @ b (operands in the compute dtype) for a kernel to add into a float32 buffer
        itself: in float32 on CUDA, as `into` and `accumulate` add it there, so that both give
        the same sums; in the compute dtype elsewhere."""
        if self.float32_result(a.device):
            return torch.mm(a, b, out_dtype=torch.float32)
        return a @ b

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

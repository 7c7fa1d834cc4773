"""What every Triton kernel of the engine shares: the launch grid and the activations."""

from __future__ import annotations

import triton
import triton.language as tl

MAX_BLOCK = 1024  # columns one program handles; a row of H > 1024 spans several programs


SERIES_LIMIT = tl.constexpr(0.125)  # below it tanh takes its odd series, above it the ratio of exponentials


@triton.jit
def tanh(x):
    """tanh(x) to a few ulps in x's dtype, near 0 as well (where 2σ(2x) − 1 loses the leading
    digits): the odd series x − x³/3 + 2x⁵/15 − … (to x¹³) below 1/8, (1 − e^(−2|x|)) / (1 +
    e^(−2|x|)) with x's sign above. The rational coefficients are divided in x's dtype: a
    float literal would be a float32 constant."""
    s = x * x
    zero = s * 0
    series = x * (1 + s * ((zero - 1) / 3 + s * ((zero + 2) / 15 + s * ((zero - 17) / 315 + s * (
        (zero + 62) / 2835 + s * ((zero - 1382) / 155925 + s * (zero + 21844) / 6081075))))))
    decay = tl.exp(-2 * tl.abs(x))
    ratio = (1 - decay) / (1 + decay)
    return tl.where(tl.abs(x) < SERIES_LIMIT, series, tl.where(x < 0, -ratio, ratio))


@triton.jit
def pre_activation(gate_row, product_row, offset, inside, ADD_PRODUCT: tl.constexpr):
    """A gate's pre-activation from the state-dtype buffer, plus, with ADD_PRODUCT, the
    recurrent product in the compute dtype: the float32 sum the engine's addition would make."""
    pre = tl.load(gate_row + offset, mask=inside, other=0.0)
    if ADD_PRODUCT:
        pre += tl.load(product_row + offset, mask=inside, other=0.0)
    return pre


@triton.jit
def recurrent_projection(rec_row, product_row, bias_row, offset, inside, ADD_PRODUCT: tl.constexpr,
                         HAS_BIAS: tl.constexpr):
    """One block of the recurrent projection handed over apart from the gates (W_hh h, plus
    b_hh with HAS_BIAS): read from `rec`, or, with ADD_PRODUCT, formed here from the product
    in the compute dtype (the float32 sum the engine's addition would make) and kept in `rec`
    for backward."""
    if ADD_PRODUCT:
        value = tl.load(product_row + offset, mask=inside, other=0.0).to(rec_row.dtype.element_ty)
        if HAS_BIAS:
            value = tl.load(bias_row + offset, mask=inside, other=0.0) + value
        tl.store(rec_row + offset, value, mask=inside)
    else:
        value = tl.load(rec_row + offset, mask=inside, other=0.0)
    return value


@triton.jit
def store_gradient(d_gate_row, d_low_row, offset, value, inside, ADD_PRODUCT: tl.constexpr):
    """A gate's gradient into the state-dtype buffer and, with ADD_PRODUCT, in the compute
    dtype for the product that gives d h_{t-1}."""
    tl.store(d_gate_row + offset, value, mask=inside)
    if ADD_PRODUCT:
        tl.store(d_low_row + offset, value.to(d_low_row.dtype.element_ty), mask=inside)


def block_size(hidden_size: int) -> int:
    return min(MAX_BLOCK, triton.next_power_of_2(hidden_size))


def grid(rows: int, hidden_size: int) -> tuple[int, int]:
    """One program per row and block of columns."""
    return rows, triton.cdiv(hidden_size, block_size(hidden_size))


class IndexesItsGates:
    """A Triton kernel reads the gate buffers by offset itself, so the engine cuts no views of
    their blocks for it (`FusedKernel.blocks`). First among a kernel's bases."""

    def blocks(self, hidden_size: int) -> dict[str, slice]:
        return {}

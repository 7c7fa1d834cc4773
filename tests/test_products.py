"""The recurrent product packed for MKL (`Products.repeated`) gives the unpacked numbers.

Packing applies on CPU to float32 loops of at least `PACKED_MIN_STEPS` steps, which the
float64 equalities of test_engines.py never reach; here the same float32 layers run with and
without it and must agree to float32 rounding.
"""

from __future__ import annotations

import pytest
import torch

import lstmkit
from helpers import ALL_CELLS, assert_close, cell_id
from lstmkit.engines.fused import products
from lstmkit.engines.fused.products import PACKED_MIN_STEPS, PackedProduct, Products, RepeatedProduct

pytestmark = pytest.mark.skipif(not products.MKL_PACKING, reason="this torch has no MKL packed sgemm")


def run_layer(layer, x, lengths):
    """Outputs, final states and every gradient of one forward and backward."""
    layer.zero_grad()
    x = x.detach().requires_grad_()
    output, state = layer(x, lengths=lengths)
    states = state if isinstance(state, tuple) else (state,)
    (output.sum() + sum((s * s).sum() for s in states)).backward()
    return [output, *states, x.grad, *(p.grad for p in layer.parameters())]


@pytest.mark.parametrize("cell, options", [pytest.param(*c, id=cell_id(*c)) for c in ALL_CELLS])
@pytest.mark.parametrize("lengths", [None, [PACKED_MIN_STEPS + 3, PACKED_MIN_STEPS, 7]], ids=["full", "lengths"])
def test_packed_loop_equals_unpacked(cell, options, lengths, monkeypatch):
    torch.manual_seed(0)
    # 32 units: at 8, layernorm's gradients amplified float32's rounding past 2e-4 of their scale (an AMD EPYC)
    layer = lstmkit.Recurrent(cell, input_size=6, hidden_size=32, engine="fused", **options)
    x = torch.randn(PACKED_MIN_STEPS + 3, 3, 6)
    packed_calls = []
    product = PackedProduct.product
    monkeypatch.setattr(PackedProduct, "product", lambda self, a: packed_calls.append(a) or product(self, a))
    packed = run_layer(layer, x, lengths)
    assert len(packed_calls) == 2 * (PACKED_MIN_STEPS + 3)  # every step, forward and backward
    monkeypatch.setattr(products, "MKL_PACKING", False)
    unpacked = run_layer(layer, x, lengths)
    assert len(packed_calls) == 2 * (PACKED_MIN_STEPS + 3)
    for ours, theirs in zip(packed, unpacked, strict=True):  # float32 summed in another order: 1.9e-6 at most
        assert_close(ours, theirs, tolerance=2e-5)  # of each tensor's scale on an AMD EPYC


@pytest.mark.parametrize("rows", [5, 3])
def test_packed_product_into_and_accumulate(rows):
    torch.manual_seed(0)
    weight, bias, out = torch.randn(7, 20), torch.randn(20), torch.randn(rows, 20)
    a = torch.randn(rows, 7)
    packed = Products(torch.float32, torch.float32).repeated(weight, 5, PACKED_MIN_STEPS)
    assert isinstance(packed, PackedProduct)
    expected = out + a @ weight
    packed.accumulate(out, a)
    torch.testing.assert_close(out, expected)
    packed.into(out, a, bias)
    torch.testing.assert_close(out, torch.addmm(bias, a, weight))
    packed.into(out, a)
    torch.testing.assert_close(out, a @ weight)


@pytest.mark.parametrize("compute, state, steps", [
    (torch.float64, torch.float64, PACKED_MIN_STEPS),       # MKL packs float32 only
    (torch.float32, torch.float32, PACKED_MIN_STEPS - 1),   # too short to pay for the packing
    (torch.bfloat16, torch.float32, PACKED_MIN_STEPS),      # mixed precision casts per step
])
def test_products_not_packed(compute, state, steps):
    weight = torch.randn(7, 20, dtype=compute)
    assert type(Products(compute, state).repeated(weight, 5, steps)) is RepeatedProduct

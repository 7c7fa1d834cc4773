"""torch.autograd.gradcheck on every cell and option and both per-layer engines, through a
two-layer bidirectional stack with a given initial state and padded lengths (and a projection
for the LSTM family). The native engine is torch.nn's own backward. Fast mode compares the
analytical and numerical Jacobians along random directions (u' J v), which a wrong entry of
either changes, in a tenth of the time of the full Jacobians."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

import lstmkit
from helpers import ALL_CELL_PARAMS, random_state


@pytest.mark.parametrize("engine", ["reference", "fused"])
@pytest.mark.parametrize("cell, options", ALL_CELL_PARAMS)
def test_gradcheck(cell, options, engine):
    torch.manual_seed(0)
    proj_size = 2 if lstmkit.cells.make_cell(cell, **options).supports_projection else 0
    layer = lstmkit.Recurrent(
        cell, 2, 3, num_layers=2, bidirectional=True, proj_size=proj_size, dtype=torch.float64,
        engine=engine, **options,
    )
    names = [name for name, _ in layer.named_parameters()]
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    hx = random_state(layer, batch_size=2)
    state = list(hx) if isinstance(hx, tuple) else [hx]

    def run(x, *tensors):
        initial = tuple(tensors[: len(state)]) if len(state) == 2 else tensors[0]
        parameters = dict(zip(names, tensors[len(state):], strict=True))
        output, final = functional_call(layer, parameters, (x, initial), {"lengths": [4, 3]})
        return (output, *final) if isinstance(final, tuple) else (output, final)

    inputs = (x, *state, *(parameter.detach().requires_grad_() for parameter in layer.parameters()))
    assert torch.autograd.gradcheck(run, inputs, eps=1e-6, atol=1e-7, fast_mode=True)

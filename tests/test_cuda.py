"""The same proofs on a GPU: every engine equals the reference engine on CUDA tensors, for the
layers and the cell modules' steps, autocast runs every cell, and the native engine's weights
stay in cuDNN's flat buffer. Skipped without a GPU (`pytest -m cuda` runs only these)."""

from __future__ import annotations

import warnings

import pytest
import torch

import lstmkit
from helpers import ALL_CELL_PARAMS, relative_error

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
CUDA = torch.device("cuda")


def layer_pair(cell, options, engine, dtype=torch.float64, **layer_options):
    torch.manual_seed(0)
    reference = lstmkit.Recurrent(cell, 8, 16, engine="reference", dtype=dtype, device=CUDA, **options, **layer_options)
    layer = lstmkit.Recurrent(cell, 8, 16, engine=engine, dtype=dtype, device=CUDA, **options, **layer_options)
    layer.load_state_dict(reference.state_dict())
    return layer, reference


@pytest.mark.parametrize("engine", ["fused", "triton"])
@pytest.mark.parametrize("cell, options", ALL_CELL_PARAMS)
def test_engine_equals_reference_on_cuda_in_float64(cell, options, engine):
    layer, reference = layer_pair(cell, options, engine, num_layers=2, bidirectional=True)
    x = torch.randn(9, 4, 8, dtype=torch.float64, device=CUDA, requires_grad=True)
    lengths = [9, 3, 7, 1]
    ours, theirs = layer(x, lengths=lengths)[0], reference(x, lengths=lengths)[0]
    assert relative_error(ours, theirs) < 1e-10
    weights = torch.randn_like(ours)
    ours_grads = torch.autograd.grad((ours * weights).sum(), [x, *layer.parameters()])
    theirs_grads = torch.autograd.grad((theirs * weights).sum(), [x, *reference.parameters()])
    for mine, other in zip(ours_grads, theirs_grads, strict=True):
        assert relative_error(mine, other) < 1e-10


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("engine", ["auto", "fused", "triton"])
@pytest.mark.parametrize("cell, options", ALL_CELL_PARAMS)
def test_cuda_autocast_runs_every_cell_close_to_float32(cell, options, engine, dtype):
    layer, reference = layer_pair(cell, options, engine, torch.float32)
    x = torch.randn(9, 4, 8, device=CUDA)
    with torch.autocast("cuda", dtype):
        output = layer(x)[0]
    assert output.dtype == dtype
    assert relative_error(output.float(), reference(x)[0]) < 0.1
    output.float().sum().backward()
    assert all(torch.isfinite(parameter.grad).all() for parameter in layer.parameters())


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_native_weights_stay_in_one_cudnn_buffer(cell):
    layer = lstmkit.Recurrent(cell, 8, 16, num_layers=2, bidirectional=True).to(CUDA)
    x = torch.randn(5, 3, 8, device=CUDA)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "not part of single contiguous chunk of memory"
        output = layer(x)[0]
    twin = getattr(torch.nn, cell.upper())(8, 16, num_layers=2, bidirectional=True).to(CUDA)
    twin.load_state_dict(layer.state_dict())
    assert relative_error(output, twin(x)[0]) < 1e-5



@pytest.mark.parametrize("engine", ["auto", "fused", "triton"])
@pytest.mark.parametrize("cell, options", ALL_CELL_PARAMS)
def test_cell_module_step_equals_reference_on_cuda_in_float64(cell, options, engine):
    torch.manual_seed(0)
    reference = lstmkit.RecurrentCell(cell, 8, 16, engine="reference", dtype=torch.float64, device=CUDA, **options)
    module = lstmkit.RecurrentCell(cell, 8, 16, engine=engine, dtype=torch.float64, device=CUDA, **options)
    module.load_state_dict(reference.state_dict())
    x = torch.randn(4, 8, dtype=torch.float64, device=CUDA, requires_grad=True)

    def two_steps(step):
        """The state after two steps, the second from the first's state, as a tuple of tensors."""
        state = step(x, step(x))
        return state if isinstance(state, tuple) else (state,)

    ours, theirs = two_steps(module), two_steps(reference)
    for mine, other in zip(ours, theirs, strict=True):
        assert relative_error(mine, other) < 1e-10
    weights = [torch.randn_like(part) for part in theirs]
    ours_grads = torch.autograd.grad(ours, [x, *module.parameters()], weights)
    theirs_grads = torch.autograd.grad(theirs, [x, *reference.parameters()], weights)
    for mine, other in zip(ours_grads, theirs_grads, strict=True):
        assert relative_error(mine, other) < 1e-10

"""The same proofs on a GPU: every engine equals the reference engine on CUDA tensors, for the
layers and the cell modules' steps, autocast runs every cell, and the native engine's weights
stay in cuDNN's flat buffer. Skipped without a GPU (`pytest -m cuda` runs only these)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import lstmkit
from helpers import ALL_CELL_PARAMS, relative_error
from lstmkit.engines.fused import graphs
from lstmkit.engines.fused.products import Products

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


@pytest.mark.parametrize("cell, options", [param for param in ALL_CELL_PARAMS if param.values[0] != "layernorm"])
def test_triton_rows_split_across_programs_equal_reference_on_cuda(cell, options, small_column_blocks):
    """H = 16 in blocks of 4 columns on the GPU: four programs per row."""
    layer, reference = layer_pair(cell, options, "triton")
    x = torch.randn(5, 3, 8, dtype=torch.float64, device=CUDA, requires_grad=True)
    ours, theirs = layer(x)[0], reference(x)[0]
    assert relative_error(ours, theirs) < 1e-10
    ours_grads = torch.autograd.grad(ours.sum(), [x, *layer.parameters()])
    theirs_grads = torch.autograd.grad(theirs.sum(), [x, *reference.parameters()])
    for mine, other in zip(ours_grads, theirs_grads, strict=True):
        assert relative_error(mine, other) < 1e-10


def test_mixed_precision_products_reach_the_float32_buffer_unrounded():
    """Under mixed precision on CUDA the half-precision product goes into the float32 buffer
    from cuBLAS itself (`out_dtype=`): the sums equal float64's to float32 rounding, where a
    product rounded to bfloat16 first would be off by ~1e-3."""
    products = Products(torch.bfloat16, torch.float32)
    a, b = torch.randn(64, 256, device=CUDA).bfloat16(), torch.randn(256, 512, device=CUDA).bfloat16()
    bias, out = torch.randn(64, 512, device=CUDA), torch.empty(64, 512, device=CUDA)
    product = a.double() @ b.double()
    products.into(out, a, b, bias)
    assert relative_error(out, bias.double() + product) < 1e-6
    products.accumulate(out, a, b)
    assert relative_error(out, bias.double() + 2 * product) < 1e-6
    products.into(out, a, b)
    assert relative_error(out, product) < 1e-6


@pytest.fixture
def fresh_graphs(monkeypatch):
    """No key seen and no graph captured yet; the captured graphs by key."""
    monkeypatch.setattr(graphs, "CACHE", graphs.GraphCache(graphs.DEFAULT_LIMIT))
    return graphs.CACHE.captured


@pytest.mark.parametrize("engine", ["fused", "triton"])
@pytest.mark.parametrize("cell, options", ALL_CELL_PARAMS)
def test_cuda_graph_replays_equal_the_reference_call_after_call(cell, options, engine, fresh_graphs):
    """A key's first call runs step by step, its second captures the loop in a CUDA graph, the
    later ones replay it: on new input and new weights every call equals the reference engine,
    the gates of return_gates=True too."""
    layer, reference = layer_pair(cell, options, engine, num_layers=2, bidirectional=True)
    for call in range(4):
        with torch.no_grad():
            for parameter, twin in zip(layer.parameters(), reference.parameters(), strict=True):
                parameter.add_(torch.randn_like(parameter) * 0.1)
                twin.copy_(parameter)
        x = torch.randn(9, 4, 8, dtype=torch.float64, device=CUDA, requires_grad=True)
        ours, theirs = layer(x, return_gates=True), reference(x, return_gates=True)
        assert relative_error(ours[0], theirs[0]) < 1e-10
        for name, gate in theirs[2].gates.items():
            assert relative_error(ours[2].gates[name], gate) < 1e-10
        if theirs[2].cell_states is not None:
            assert relative_error(ours[2].cell_states, theirs[2].cell_states) < 1e-10
        weights = torch.randn_like(ours[0])
        ours_grads = torch.autograd.grad((ours[0] * weights).sum(), [x, *layer.parameters()])
        theirs_grads = torch.autograd.grad((theirs[0] * weights).sum(), [x, *reference.parameters()])
        for mine, other in zip(ours_grads, theirs_grads, strict=True):
            assert relative_error(mine, other) < 1e-10, call
    assert len(fresh_graphs) > 0


@pytest.mark.parametrize("cell, options", ALL_CELL_PARAMS)
def test_cuda_graph_replays_under_autocast_equal_step_by_step_runs(cell, options, fresh_graphs, monkeypatch):
    """Under bfloat16 autocast, replayed calls give the numbers of the same calls run step by step."""
    layer, _ = layer_pair(cell, options, "triton", torch.float32)
    inputs = [torch.randn(9, 4, 8, device=CUDA) for _ in range(3)]

    def outputs_and_grads():
        results = []
        for x in inputs:
            with torch.autocast("cuda", torch.bfloat16):
                output = layer(x)[0]
            grads = torch.autograd.grad(output.float().sum(), list(layer.parameters()))
            results.append([output.float(), *grads])
        return results

    replayed = outputs_and_grads()
    assert len(fresh_graphs) > 0
    monkeypatch.setattr(graphs, "CACHE", graphs.GraphCache(0))
    for call, (ours, eager) in enumerate(zip(replayed, outputs_and_grads(), strict=True)):
        for mine, other in zip(ours, eager, strict=True):
            assert relative_error(mine, other) < 1e-2, call


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("engine", ["auto", "fused", "triton"])
@pytest.mark.parametrize("cell, options", ALL_CELL_PARAMS)
def test_cuda_autocast_runs_every_cell_close_to_float32(cell, options, engine, dtype):
    layer, reference = layer_pair(cell, options, engine, torch.float32)
    x = torch.randn(9, 4, 8, device=CUDA)
    with torch.autocast("cuda", dtype):
        output = layer(x)[0]
    assert output.dtype == torch_nn_output_dtype(layer, options, x, dtype)
    assert relative_error(output.float(), reference(x)[0]) < 0.1
    output.float().sum().backward()
    assert all(torch.isfinite(parameter.grad).all() for parameter in layer.parameters())


def torch_nn_output_dtype(layer, options, x, dtype):
    """The dtype a layer's output has under CUDA autocast to `dtype`: torch.nn's own module's on
    the native engine (torch casts cuDNN RNNs to float16 under every CUDA autocast), the autocast
    dtype on the others."""
    if layer.engine_name != "native":
        return dtype
    twin = getattr(torch.nn, layer.cell.name.upper())(8, 16, device=CUDA, **options)
    with torch.autocast("cuda", dtype):
        return twin(x)[0].dtype


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("engine", ["auto", "fused", "triton"])
@pytest.mark.parametrize("cell, options", ALL_CELL_PARAMS)
def test_cuda_half_parameters_run_every_cell_close_to_float32(cell, options, engine, dtype):
    """Parameters in bfloat16 or float16 on CUDA: outputs, states and gradients in that dtype,
    close to the float32 layer's, with padded batches."""
    layer, reference = layer_pair(cell, options, engine, torch.float32)
    layer.to(dtype)
    x = torch.randn(9, 4, 8, device=CUDA)
    output, _ = layer(x.to(dtype), lengths=[9, 3, 7, 1])
    assert output.dtype == dtype
    assert relative_error(output.float(), reference(x, lengths=[9, 3, 7, 1])[0]) < 0.1
    output.float().sum().backward()
    assert all(parameter.grad.dtype == dtype and torch.isfinite(parameter.grad).all()
               for parameter in layer.parameters())


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


def test_triton_launches_a_misaligned_state_on_its_own_compiled_kernel():
    """`launch` calls a compiled kernel again without Triton's binding, keyed by what Triton
    specialises on: a cell state 8 bytes off a 16-byte boundary gets a kernel of its own, and
    both steps equal the reference engine, forward and backward."""
    from lstmkit.engines.triton import launch
    from lstmkit.engines.triton.lstm import lstm_forward

    torch.manual_seed(0)
    reference = lstmkit.PeepholeLSTMCell(8, 16, engine="reference", dtype=torch.float64, device=CUDA)
    module = lstmkit.PeepholeLSTMCell(8, 16, engine="triton", dtype=torch.float64, device=CUDA)
    module.load_state_dict(reference.state_dict())
    x, h = torch.randn(4, 8, dtype=torch.float64, device=CUDA), torch.randn(4, 16, dtype=torch.float64, device=CUDA)
    storage = torch.randn(4 * 16 + 1, dtype=torch.float64, device=CUDA)
    for c in (storage[:-1].view(4, 16), storage[1:].view(4, 16)):
        c = c.detach().requires_grad_()
        for _ in range(2):  # the first launch of a specialisation goes through Triton, the second not
            ours, theirs = module(x, (h, c)), reference(x, (h, c))
            for mine, other in zip(ours, theirs, strict=True):
                assert relative_error(mine, other) < 1e-10
            mine = torch.autograd.grad(sum(part.sum() for part in ours), [c, *module.parameters()])
            other = torch.autograd.grad(sum(part.sum() for part in theirs), [c, *reference.parameters()])
            for ours_grad, theirs_grad in zip(mine, other, strict=True):
                assert relative_error(ours_grad, theirs_grad) < 1e-10
    misaligned = {(torch.float64, False) in key for key in launch.COMPILED if key[0] == id(lstm_forward)}
    assert misaligned == {True, False}  # a kernel for the aligned state, one for the other


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("cell, options", ALL_CELL_PARAMS)
def test_cuda_triton_under_autocast_agrees_with_fused(cell, options, dtype):
    """The Triton kernels add the recurrent product and write h_t and the gate gradients in the
    autocast dtype themselves; the fused engine casts and adds with torch: the same float32
    sums, rounded to nearest even on both sides."""
    fused, _ = layer_pair(cell, options, "fused", torch.float32, num_layers=2)
    triton, _ = layer_pair(cell, options, "triton", torch.float32, num_layers=2)
    x = torch.randn(9, 4, 8, device=CUDA, requires_grad=True)
    runs = []
    for layer in (fused, triton):
        with torch.autocast("cuda", dtype):
            output = layer(x)[0]
        runs.append([output, *torch.autograd.grad(output.float().sum(), [x, *layer.parameters()])])
    for ours, theirs in zip(runs[1], runs[0], strict=True):
        assert relative_error(ours.float(), theirs.float()) < 1e-2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("engine", ["auto", "fused", "triton"])
@pytest.mark.parametrize("cell, options", ALL_CELL_PARAMS)
def test_cuda_autocast_steps_every_cell_module_close_to_float32(cell, options, engine, dtype):
    """A cell module's step under CUDA autocast: the dtype torch.nn's cell returns on the native
    engine, the autocast dtype on the others; close to the float32 step; finite float32
    gradients."""
    torch.manual_seed(0)
    module = lstmkit.RecurrentCell(cell, 8, 16, engine=engine, device=CUDA, **options)
    x = torch.randn(4, 8, device=CUDA)
    with torch.autocast("cuda", dtype):
        state = module(x)
    h = state[0] if isinstance(state, tuple) else state
    twin_dtype = dtype
    if module.engine_name == "native":
        twin = getattr(torch.nn, f"{cell.upper()}Cell")(8, 16, device=CUDA, **options)
        with torch.autocast("cuda", dtype):
            twin_state = twin(x)
        twin_dtype = (twin_state[0] if isinstance(twin_state, tuple) else twin_state).dtype
    assert h.dtype == twin_dtype
    expected = module(x)
    assert relative_error(h.float(), expected[0] if isinstance(expected, tuple) else expected) < 0.1
    h.float().sum().backward()
    assert all(parameter.grad.dtype == torch.float32 and torch.isfinite(parameter.grad).all()
               for parameter in module.parameters())


def test_reber_trains_a_step_on_cuda():
    """Its loss masks the valid steps of strings of different lengths: the mask is made on the
    batch's device (made on the CPU, it failed against lengths on the GPU)."""
    from lstmkit.pipelines.longlag import TaskJob, TaskTrainingConfig
    from lstmkit.tasks import EmbeddedReberTask
    from lstmkit.training import Processes

    task = EmbeddedReberTask()
    job = TaskJob(task, "lstm", TaskTrainingConfig(hidden_size=8, batch_size=4), task.sample(4, torch.Generator()),
                  Processes(), CUDA)
    job.model.to(CUDA)
    loss, share = job.train_loss(job.model, 0)
    loss.backward()
    assert share == 4 and loss.device.type == "cuda" and math.isfinite(loss.item())
    assert math.isfinite(job.evaluate()["test_loss"])

"""What torch.nn's RNNs support, on every engine: packed batches packed with the default
enforce_sorted=True, a batch of size 0, double backward, torch.func.grad and vmap, lengths
given as numpy arrays, and torch.jit.trace (torch.jit.script is refused in one line). Each result is compared in float64 with torch.nn or the reference engine.
"""

from __future__ import annotations

import copy
import io
import pickle
import re
import warnings

import numpy as np
import pytest
import torch
from torch.autograd import forward_ad
from torch.func import functional_call, grad, vmap
from torch.nn.utils import parametrizations, parametrize, prune
from torch.nn.utils.rnn import pack_padded_sequence

import lstmkit
from helpers import ALL_CELL_PARAMS, assert_close, assert_same_run, flatten_outputs, torch_twin, triton_installed

PLAIN = ["lstm", "gru", "rnn"]
ENGINES = ["native", "fused", "reference"]
TRITON = pytest.param("triton", marks=triton_installed)


def engines_for(cell, options):
    plain = cell in PLAIN and not (cell == "lstm" and options)
    return ["auto", "fused", "reference"] + (["native"] if plain else [])


def twin_layers(cell, options, engine, **layer_options):
    torch.manual_seed(0)
    reference = lstmkit.Recurrent(cell, 3, 4, engine="reference", dtype=torch.float64, **options, **layer_options)
    layer = lstmkit.Recurrent(cell, 3, 4, engine=engine, dtype=torch.float64, **options, **layer_options)
    layer.load_state_dict(reference.state_dict())
    return layer, reference


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("cell", PLAIN)
def test_sorted_packed_batches_equal_torch_nn(cell, engine):
    """pack_padded_sequence(x, [6, 4, 2]) leaves sorted_indices None; it used to crash."""
    layer = lstmkit.Recurrent(cell, 3, 4, num_layers=2, bidirectional=True, engine=engine, dtype=torch.float64)
    twin = torch_twin(layer)
    x = torch.randn(6, 3, 3, dtype=torch.float64, requires_grad=True)
    ours, theirs = layer(pack_padded_sequence(x, [6, 4, 2])), twin(pack_padded_sequence(x, [6, 4, 2]))
    assert ours[0].sorted_indices is None
    assert torch.equal(ours[0].batch_sizes, theirs[0].batch_sizes)
    assert_same_run(ours, theirs, {"input": x, **dict(layer.named_parameters())},
                    {"input": x, **dict(twin.named_parameters())})


@pytest.mark.parametrize("cell, options", ALL_CELL_PARAMS)
def test_a_batch_of_size_zero_gives_empty_outputs_and_zero_gradients(cell, options):
    for engine in engines_for(cell, options):
        layer, _ = twin_layers(cell, options, engine, num_layers=2, bidirectional=True)
        x = torch.randn(5, 0, 3, dtype=torch.float64, requires_grad=True)
        output, state = layer(x)
        h_n = state[0] if isinstance(state, tuple) else state
        assert output.shape == (5, 0, 8) and h_n.shape == (4, 0, 4), engine
        output.sum().backward()
        assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in layer.parameters()), engine
        for none in ([], np.array([]), torch.tensor([])):  # empty arrays are float: no length in them is fractional
            output, _ = layer(x, lengths=none)  # torch cannot pack an empty batch: the native engine must not try
            assert output.shape == (5, 0, 8), engine


@pytest.mark.parametrize("cell, options", ALL_CELL_PARAMS)
def test_double_backward_equals_the_reference_engine(cell, options):
    """A gradient penalty: d/dθ ||d loss / d x||², through every engine's backward."""
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    penalties = {}
    for engine in engines_for(cell, options):
        layer, _ = twin_layers(cell, options, engine, num_layers=2)
        inputs = x.clone().requires_grad_()
        output = layer(inputs, lengths=[5, 3])[0]
        (d_input,) = torch.autograd.grad(output.pow(2).sum(), inputs, create_graph=True)
        penalties[engine] = torch.autograd.grad(d_input.pow(2).sum(), list(layer.parameters()))
    for engine, grads in penalties.items():
        for ours, theirs in zip(grads, penalties["reference"], strict=True):
            assert_close(ours, theirs, f"{engine} second-order gradient")


@pytest.mark.parametrize("engine", ["fused", TRITON])
@pytest.mark.parametrize("module_type", ["gru", "layernorm", "peephole-cell", "gru-cell"])
def test_batched_gradients_equal_the_reference_engine(module_type, engine):
    """A vmap over the backward (autograd.grad(is_grads_batched=True), jacobian(vectorize=True),
    torch.func.vmap of autograd.grad), which the kernels have no batching rule for: the backward
    is then composed of plain operations (the reference loop), with the reference engine's
    Jacobian."""
    torch.manual_seed(0)
    cell = module_type.removesuffix("-cell")
    if module_type.endswith("-cell"):
        module = lstmkit.RecurrentCell(cell, 3, 4, dtype=torch.float64, engine=engine)
        twin = lstmkit.RecurrentCell(cell, 3, 4, dtype=torch.float64, engine="reference")
        twin.load_state_dict(module.state_dict())

        def last_state(model, x):
            state = None
            for x_t in x:
                state = model(x_t, state)
            return state[0] if isinstance(state, tuple) else state
    else:
        module, twin = twin_layers(cell, {}, engine)

        def last_state(model, x):
            return model(x)[0][-1]
    x = torch.randn(3, 2, 3, dtype=torch.float64)
    expected = torch.autograd.functional.jacobian(lambda inputs: last_state(twin, inputs), x)
    actual = torch.autograd.functional.jacobian(lambda inputs: last_state(module, inputs), x, vectorize=True)
    assert_close(actual, expected, "jacobian")
    inputs = x.clone().requires_grad_()
    state, directions = last_state(module, inputs), torch.eye(8, dtype=torch.float64).view(8, 2, 4)
    (rows,) = torch.autograd.grad(state, inputs, directions, is_grads_batched=True, retain_graph=True)
    assert_close(rows, expected.reshape(8, 3, 2, 3), "is_grads_batched")
    rows = vmap(lambda direction: torch.autograd.grad(state, inputs, direction, retain_graph=True)[0])(directions)
    assert_close(rows, expected.reshape(8, 3, 2, 3), "torch.func.vmap of autograd.grad")


@pytest.mark.parametrize("engine", ["fused", TRITON])
@pytest.mark.parametrize("cell, options", ALL_CELL_PARAMS)
def test_double_backward_of_a_layer_fed_its_own_output(cell, options, engine):
    """create_graph=True through a layer applied twice, the second time to its own output and
    state: the second call's inputs carry the first's history through the same weights, which
    its recomputed backward must not follow a second time. The weights' gradients and their
    second derivatives are the reference engine's."""
    x = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    weighting = torch.randn(3, 2, 4, dtype=torch.float64)
    results = {}
    for name in (engine, "reference"):
        layer, _ = twin_layers(cell, options, name)  # the same weights for each engine
        first_output, state = layer(x)
        output, _ = layer(first_output[..., :3], state)
        parameters = list(layer.parameters())
        first = torch.autograd.grad((output * weighting).sum(), [*parameters, x], create_graph=True)
        results[name] = first, torch.autograd.grad(sum(grad.pow(2).sum() for grad in first), parameters)
    for order, ours, theirs in zip(("first", "second"), results[engine], results["reference"], strict=True):
        for index, (actual, expected) in enumerate(zip(ours, theirs, strict=True)):
            assert_close(actual, expected, f"{order}-order gradient {index}")


@pytest.mark.parametrize("module_type, engine", [
    ("layer", "auto"), ("layer", "fused"), ("cell module", "fused"),
    pytest.param("cell module", "triton", marks=triton_installed),
])
def test_torch_func_grad_and_vmap_run_on_the_reference_engine_and_say_so_once(module_type, engine):
    """A layer's call and a cell module's step under torch.func.grad and vmap: the reference
    engine's numbers, and one warning, attributed to the caller."""
    if module_type == "layer":
        module, reference = twin_layers("lstm", {}, engine)
        x = torch.randn(4, 5, 2, 3, dtype=torch.float64)
    else:
        torch.manual_seed(0)
        module = lstmkit.PeepholeLSTMCell(3, 4, dtype=torch.float64, engine=engine)
        reference = lstmkit.PeepholeLSTMCell(3, 4, dtype=torch.float64, engine="reference")
        reference.load_state_dict(module.state_dict())
        x = torch.randn(5, 2, 3, dtype=torch.float64)

    def loss(model, parameters, inputs):
        return functional_call(model, parameters, (inputs,))[0].pow(2).sum()

    lstmkit.engines.TRANSFORM_WARNED.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = grad(lambda p: loss(module, p, x[0]))(dict(module.named_parameters()))
        batched = vmap(lambda inputs: module(inputs)[0])(x)
    messages = [str(warning.message) for warning in caught if "torch.func" in str(warning.message)]
    assert len(messages) == 1 and "runs these calls on the reference engine" in messages[0]
    assert caught[0].filename == __file__
    theirs = grad(lambda p: loss(reference, p, x[0]))(dict(reference.named_parameters()))
    for name in theirs:
        assert_close(ours[name], theirs[name], name)
    for index in range(len(x)):
        assert_close(batched[index], reference(x[index])[0], f"vmap item {index}")


@pytest.mark.parametrize("engine", ["auto", "fused", "reference"])
def test_a_packed_sequence_made_outside_torch_func_transforms_runs_under_them(engine):
    """MAML's pattern: the batch packed once, then grad over the parameters, and vmap over an
    ensemble's parameter sets. Unpacking failed on every engine ("Cannot access data pointer of
    Tensor that doesn't have storage", as torch.nn fails); the numbers are torch.nn's autograd."""
    torch.manual_seed(0)
    layer = lstmkit.LSTM(3, 4, bidirectional=True, proj_size=2, engine=engine, dtype=torch.float64)
    twin = torch_twin(layer)
    packed = pack_padded_sequence(torch.randn(5, 4, 3, dtype=torch.float64), [3, 5, 1, 4], enforce_sorted=False)

    def loss(model, parameters):
        output, (h_n, c_n) = functional_call(model, parameters, (packed,))
        return output.data.pow(2).sum() + h_n.sum() + 3 * c_n.sum()

    doubled = {name: 2 * value.detach() for name, value in twin.named_parameters()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # that the calls run on the reference engine
        ours = grad(lambda parameters: loss(layer, parameters))(dict(layer.named_parameters()))
        ensemble = vmap(lambda parameters: functional_call(layer, parameters, (packed,))[0].data)(
            {name: torch.stack([value.detach(), doubled[name]]) for name, value in layer.named_parameters()})
    theirs = torch.autograd.grad(loss(twin, dict(twin.named_parameters())), list(twin.parameters()))
    for (name, _), expected in zip(twin.named_parameters(), theirs, strict=True):
        assert_close(ours[name], expected, name)
    assert_close(ensemble[0], twin(packed)[0].data, "ensemble member 1")
    assert_close(ensemble[1], functional_call(twin, doubled, (packed,))[0].data, "ensemble member 2")


def test_lengths_batched_by_vmap_are_refused_by_name():
    """Per-sample lengths under vmap (and vmap of grad) stopped in torch's "data-dependent
    control flow" error, which sends the user to PyTorch's issue tracker; the same lengths for
    every sample run."""
    layer = lstmkit.LSTM(3, 4, dtype=torch.float64)
    x = torch.randn(2, 5, 3, 3, dtype=torch.float64)
    lengths = torch.tensor([[5, 2, 4], [3, 5, 1]])
    for transform in (vmap, lambda function: vmap(grad(lambda *arguments: function(*arguments).sum()))):
        with pytest.raises(ValueError, match=re.escape("lengths cannot be batched by torch.func.vmap")):
            transform(lambda inputs, lengths: layer(inputs, lengths=lengths)[0])(x, lengths)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # that the calls run on the reference engine
        batched = vmap(lambda inputs: layer(inputs, lengths=[5, 2, 4])[0])(x)
    assert_close(batched[1], layer(x[1], lengths=[5, 2, 4])[0], "vmap item 2")


@pytest.mark.parametrize("engine", ["fused", TRITON])
@pytest.mark.parametrize("module_type", ["gru", "lstm-lengths", "peephole", "peephole-cell"])
def test_forward_mode_ad_runs_on_the_reference_engine_and_says_so_once(module_type, engine):
    """Dual tensors (torch.autograd.forward_ad) through a layer or a cell module on the kernel
    engines: the tangents of the reference engine (torch.nn.GRU's and LSTM's for the plain
    cells), and one warning per engine, attributed to the caller."""
    torch.manual_seed(0)
    if module_type == "peephole-cell":
        module = lstmkit.PeepholeLSTMCell(3, 4, dtype=torch.float64, engine=engine)
        twin = lstmkit.PeepholeLSTMCell(3, 4, dtype=torch.float64, engine="reference")
        twin.load_state_dict(module.state_dict())
        x, tangent, options = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64), {}
    else:
        cell = module_type.removesuffix("-lengths")
        module, twin = twin_layers(cell, {}, engine)
        if cell != "peephole":
            twin = torch_twin(module)
        x, tangent = torch.randn(5, 2, 3, dtype=torch.float64), torch.randn(5, 2, 3, dtype=torch.float64)
        options = {"lengths": [5, 3]} if module_type == "lstm-lengths" else {}
    lstmkit.engines.TRANSFORM_WARNED.clear()
    with warnings.catch_warnings(record=True) as caught, forward_ad.dual_level():
        warnings.simplefilter("always")
        ours = forward_ad.unpack_dual(module(forward_ad.make_dual(x, tangent), **options)[0])
        theirs = forward_ad.unpack_dual(twin(forward_ad.make_dual(x, tangent))[0])
    ours_warnings = [warning for warning in caught if "forward-mode AD" in str(warning.message)]
    assert len(ours_warnings) == 1 and "runs these calls on the reference engine" in str(ours_warnings[0].message)
    assert ours_warnings[0].filename == __file__
    for part in ("primal", "tangent"):
        ours_part, their_part = getattr(ours, part), getattr(theirs, part)
        if options:  # torch.nn cannot pack dual tensors: its padded run, up to where each sequence ends
            assert torch.equal(ours_part[3:, 1], torch.zeros(2, 4, dtype=torch.float64))
            ours_part, their_part = (torch.cat((t[:, 0], t[:3, 1])) for t in (ours_part, their_part))
        assert_close(ours_part, their_part, part)


@pytest.mark.parametrize("engine, cell, options, lengths, rerouted", [
    ("auto", "lstm", {}, None, True), ("native", "lstm", {}, None, True), ("native", "lstm", {}, [5, 3], True),
    ("native", "gru", {}, [5, 3], True), ("native", "gru", {}, None, False), ("native", "rnn", {}, None, False),
    ("native", "lstm", {"proj_size": 2}, None, False),
])
def test_forward_mode_ad_runs_on_the_native_engine_where_torchs_kernels_take_dual_tensors(
    engine, cell, options, lengths, rerouted
):
    """float32 on CPU: oneDNN's LSTM (`mkldnn_rnn_layer`) and pack_padded_sequence have no
    forward-mode formula (torch.nn.LSTM fails there with NotImplementedError); those calls run
    on the reference engine, with the warning once, and torch's GRU and RNN kernels, and its
    LSTM's cell steps (a projection), take the dual tensors themselves."""
    torch.manual_seed(0)
    module = lstmkit.Recurrent(cell, 3, 4, engine=engine, **options)
    twin = lstmkit.Recurrent(cell, 3, 4, engine="reference", **options)
    twin.load_state_dict(module.state_dict())
    x, tangent = torch.randn(5, 2, 3), torch.randn(5, 2, 3)
    lstmkit.engines.TRANSFORM_WARNED.clear()
    with warnings.catch_warnings(record=True) as caught, forward_ad.dual_level():
        warnings.simplefilter("always")
        ours = forward_ad.unpack_dual(module(forward_ad.make_dual(x, tangent), lengths=lengths)[0])
        theirs = forward_ad.unpack_dual(twin(forward_ad.make_dual(x, tangent), lengths=lengths)[0])
    warned = [warning for warning in caught if "cannot run the native engine's kernels" in str(warning.message)]
    assert len(warned) == rerouted
    torch.testing.assert_close(ours.primal, theirs.primal)
    torch.testing.assert_close(ours.tangent, theirs.tangent)


@pytest.mark.parametrize("lengths", [
    np.array([5, 2, 4]), np.array([5, 2, 4], dtype=np.int32), [np.int64(5), 2, np.int16(4)],
    torch.tensor([5, 2, 4], dtype=torch.int32), list(torch.tensor([5, 2, 4])),
], ids=["numpy-int64", "numpy-int32", "numpy-scalars", "tensor-int32", "list-of-0-d-tensors"])
def test_lengths_in_any_integer_form_give_the_same_numbers(lengths):
    layer = lstmkit.PeepholeLSTM(3, 4, dtype=torch.float64)
    x = torch.randn(5, 3, 3, dtype=torch.float64)
    assert torch.equal(layer(x, lengths=lengths)[0], layer(x, lengths=[5, 2, 4])[0])


def test_lengths_of_floats_are_refused_with_their_dtype():
    layer = lstmkit.LSTM(3, 4)
    with pytest.raises(TypeError, match="lengths must hold integers, got a numpy array of dtype float64"):
        layer(torch.randn(5, 3, 3), lengths=np.array([5.0, 2.0, 4.0]))




class HoldsALayerAndACell(torch.nn.Module):
    """A model torch.fx traces: a layer's output fed to a cell, then a Linear."""

    def __init__(self, layer: torch.nn.Module, cell: torch.nn.Module) -> None:
        super().__init__()
        self.layer, self.cell, self.readout = layer, cell, torch.nn.Linear(4, 2)

    def forward(self, x, h):
        output, _ = self.layer(x, lengths=[5, 3])
        state = self.cell(output[-1], (h, h) if self.cell.cell.has_cell_state else h)
        return self.readout(output[0] + (state[0] if self.cell.cell.has_cell_state else state))


@pytest.mark.parametrize("layer, cell", [
    (lambda: lstmkit.LSTM(3, 4), lambda: lstmkit.LSTMCell(4, 4)),
    (lambda: lstmkit.PeepholeLSTM(3, 4), lambda: lstmkit.GRUCell(4, 4)),
    (lambda: lstmkit.GRU(3, 4, engine="fused"), lambda: lstmkit.LayerNormLSTMCell(4, 4)),
], ids=["lstm", "peephole", "gru"])
def test_torch_fx_records_each_lstmkit_module_as_one_call_as_it_does_torch_nn_s(layer, cell):
    """fx takes torch.nn's modules as leaves and traced into lstmkit's, whose checks refused its
    stand-in tensors: `TypeError: input must be a Tensor or a PackedSequence, got Proxy`."""
    torch.manual_seed(0)
    model = HoldsALayerAndACell(layer(), cell()).double()
    traced = torch.fx.symbolic_trace(model)
    assert [node.target for node in traced.graph.nodes if node.op == "call_module"] == ["layer", "cell", "readout"]
    x, h = torch.randn(5, 2, 3, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    assert torch.equal(traced(x, h), model(x, h))
    for module in (lstmkit.LSTM(3, 4), lstmkit.GRUCell(3, 4)):  # fx's root: torch.nn's fail there too
        with pytest.raises(TypeError, match=re.escape(f"torch.fx cannot trace inside {type(module).__name__} (nor "
                                                      "inside torch.nn's recurrent modules): trace a module that "
                                                      "holds it, where it is recorded as one call")):
            torch.fx.symbolic_trace(module)


class StepsALayer(torch.nn.Module):
    """A model torch.fx traces that streams a layer two steps by hand."""

    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x, h, c):
        output, (h, c) = self.layer.step(x, (h, c))
        output, state = self.layer.step(output[:, :3], (h, c))
        return output + state[1]


def test_torch_fx_records_a_layers_step_as_one_call_of_the_method():
    """fx traced into step(), whose check of the input's shape refused fx's stand-in as if it
    were of the wrong shape (`got Proxy`)."""
    torch.manual_seed(0)
    model = StepsALayer(lstmkit.PeepholeLSTM(3, 5)).double()
    traced = torch.fx.symbolic_trace(model)
    assert [(node.op, node.target) for node in traced.graph.nodes if node.op in ("call_module", "call_method")] == [
        ("call_method", "step")] * 2
    x, h, c = (torch.randn(*shape, dtype=torch.float64) for shape in ((2, 3), (1, 2, 5), (1, 2, 5)))
    assert torch.equal(traced(x, h, c), model(x, h, c))
    dropping = torch.fx.symbolic_trace(StepsALayer(lstmkit.LSTM(3, 5, recurrent_dropout=0.2)))  # traced in training
    with pytest.raises(ValueError, match=re.escape("step() in training cannot run recurrent_dropout")):
        dropping(x.float(), h.float(), c.float())  # the step's checks act where the graph runs
    dropping.eval()
    with pytest.raises(ValueError, match=re.escape("step() streams forward in time; a bidirectional layer needs")):
        torch.fx.symbolic_trace(StepsALayer(lstmkit.LSTM(3, 5, bidirectional=True)))  # refused when traced
    assert torch.equal(dropping(x.float(), h.float(), c.float()), StepsALayer(dropping.layer)(x.float(), h.float(),
                                                                                              c.float()))


def test_torchscript_is_refused_in_one_line():
    """torch.jit.script cannot compile the engines' Python kernels: a layer, a cell module and a
    model holding a layer are refused by name, with what works instead."""
    for module, name in [(lstmkit.LSTM(3, 4), "LSTM"), (lstmkit.GRUCell(3, 4), "GRUCell"),
                         (torch.nn.Sequential(torch.nn.Linear(3, 3), lstmkit.PeepholeLSTM(3, 4)), "PeepholeLSTM")]:
        message = (f"TorchScript (torch.jit.script) cannot compile lstmkit's {name}: its engines run Python kernels. "
                   "Use torch.compile, torch.export (or torch.onnx.export) or torch.jit.trace instead")
        with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
            torch.jit.script(module)


@pytest.mark.parametrize("cell, options", ALL_CELL_PARAMS)
def test_traced_saved_and_loaded_layers_and_cell_modules_give_the_eager_numbers(cell, options, tmp_path):
    """torch.jit.trace records every engine's call (a plain layer's as torch's own kernel, a
    variant's as the reference math), and the saved trace runs without lstmkit's Python at
    another batch size, as in eager mode."""
    torch.manual_seed(0)
    layer = lstmkit.Recurrent(cell, 3, 4, num_layers=2, bidirectional=True, dtype=torch.float64, **options)
    module = lstmkit.RecurrentCell(cell, 3, 4, dtype=torch.float64, **options)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    for name, traced_module, example, other in [("layer", layer, x, x[:, :1]), ("cell module", module, x[0], x[1, :1])]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's warnings about the shape checks it freezes
            torch.jit.save(torch.jit.trace(traced_module, example), tmp_path / "traced.pt")
        loaded = torch.jit.load(tmp_path / "traced.pt")
        received, expected = flatten_outputs(loaded(other)), flatten_outputs(traced_module(other))
        for part, (mine, theirs) in enumerate(zip(received, expected, strict=True)):
            assert_close(mine, theirs, f"{name} output {part}")


@pytest.mark.parametrize("engine", ["auto", "fused", "triton", "reference"])
@pytest.mark.parametrize("layer_type", [lstmkit.LSTM, lstmkit.GRU, lstmkit.RNN])
def test_a_traced_plain_layer_takes_any_length_as_torch_nn_does(layer_type, engine):
    """torch.jit.trace records a plain layer on a kernel engine (or auto) as torch's own kernel,
    one op: the trace runs every length, as a trace of torch.nn does, with torch.nn's numbers.
    Traced at 64 steps, where auto picks fused with gradients and native without: the tracer's
    check, which runs the call again, saw two graphs for GRU and RNN before."""
    if engine == "triton" and not triton_installed():
        pytest.skip("triton is not installed")
    torch.manual_seed(0)
    layer = layer_type(3, 4, num_layers=2, dtype=torch.float64, engine=engine)
    twin = torch_twin(layer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(layer, (torch.randn(64, 2, 3, dtype=torch.float64),))
    unrolled = {str(warning.message) for warning in caught if "unrolled" in str(warning.message)}
    assert unrolled == (set() if engine != "reference" else {
        f"torch.jit.trace records lstmkit's {layer.cell.name} loop over time unrolled, for the 64 steps of the "
        "example input: the trace refuses input of any other length; torch's own kernel (engine='native', without "
        "return_gates=True or the regularisers it does not run) records one op that takes any length"})
    if engine == "reference":
        return
    for steps in (64, 80, 3):
        x = torch.randn(steps, 2, 3, dtype=torch.float64)
        assert_close(traced(x)[0], twin(x)[0], f"{steps} steps")


def test_a_traced_variant_refuses_another_length_and_says_so_when_traced():
    """A variant has no one op for the tracer to record: the trace unrolls the reference loop,
    says so, and refuses input of another length (cut to the traced length before)."""
    torch.manual_seed(0)
    layer = lstmkit.PeepholeLSTM(3, 4, dtype=torch.float64)
    with pytest.warns(torch.jit.TracerWarning, match=re.escape(
            "torch.jit.trace records lstmkit's peephole loop over time unrolled, for the 5 steps of the example "
            "input: the trace refuses input of any other length")):
        traced = torch.jit.trace(layer, (torch.randn(5, 2, 3, dtype=torch.float64),))
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    assert_close(traced(x)[0], layer(x)[0], "5 steps")
    for steps in (7, 3):
        with pytest.raises(RuntimeError, match=f"Expected 5 elements in a list but found {steps}"):
            traced(torch.randn(steps, 2, 3, dtype=torch.float64))
    with warnings.catch_warnings(record=True) as caught:  # a cell module's step has no length to fix
        warnings.simplefilter("always")
        torch.jit.trace(lstmkit.PeepholeLSTMCell(3, 4), (torch.randn(2, 3),))
    assert not [warning for warning in caught if "unrolled" in str(warning.message)]


@pytest.mark.parametrize("cell_type, state", [
    (lstmkit.LSTMCell, lambda batch: (torch.randn(batch, 4), torch.randn(batch, 4))),
    (lstmkit.GRUCell, lambda batch: torch.randn(batch, 4)),
    (lstmkit.PeepholeLSTMCell, lambda batch: (torch.randn(batch, 4), torch.randn(batch, 4))),
    (lstmkit.LayerNormLSTMCell, None),
])
def test_a_traced_cell_module_warns_of_nothing_as_a_traced_torch_nn_cell(cell_type, state):
    """Its input and state checks gave about ten TracerWarnings ("Converting a tensor to a
    Python boolean"), for a trace that is right at every batch size; torch.nn's cells give none."""
    cell = cell_type(3, 4)

    def inputs(batch: int) -> tuple:
        return (torch.randn(batch, 3),) if state is None else (torch.randn(batch, 3), state(batch))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(cell, inputs(2))
    assert [str(warning.message) for warning in caught if warning.category is torch.jit.TracerWarning] == []
    other = inputs(5)
    torch.testing.assert_close(flatten_outputs(traced(*other)), flatten_outputs(cell(*other)))  # a variant's
    # trace records the reference math, which rounds apart from the fused kernel in float32
    pytest.importorskip("onnx")
    with warnings.catch_warnings(record=True) as caught:  # its tracer hands return_gates in as a tensor
        warnings.simplefilter("always")
        torch.onnx.export(cell, inputs(2), io.BytesIO(), dynamo=False)
    assert [str(warning.message) for warning in caught if warning.category is torch.jit.TracerWarning] == []


def pruned(module: torch.nn.Module, name: str) -> None:
    prune.l1_unstructured(module, name, 0.5)


def weight_normed(module: torch.nn.Module, name: str) -> None:
    parametrizations.weight_norm(module, name)


@pytest.mark.parametrize("wrap", [pruned, weight_normed])
@pytest.mark.parametrize("torch_type, lstmkit_type, weight", [
    (torch.nn.LSTM, lstmkit.LSTM, "weight_hh_l0"), (torch.nn.GRU, lstmkit.GRU, "bias_ih_l0"),
    (torch.nn.LSTMCell, lstmkit.LSTMCell, "weight_hh"), (torch.nn.RNNCell, lstmkit.RNNCell, "weight_ih"),
])
def test_reset_parameters_of_a_pruned_or_parametrised_weight_gives_torch_nn_numbers(
    wrap, torch_type, lstmkit_type, weight
):
    """torch.nn re-initialises every parameter it holds, the unpruned `_orig` and the
    parametrisation's originals included; so does lstmkit, in the same order (it used to stop
    at KeyError 'weight_hh_l0_orig')."""
    layers = [kind(3, 4) for kind in (torch_type, lstmkit_type)]
    for layer in layers:
        wrap(layer, weight)
        torch.manual_seed(7)
        layer.reset_parameters()
    names = [[name for name, _ in layer.named_parameters()] for layer in layers]
    assert names[0] == names[1]
    for expected, got in zip(layers[0].parameters(), layers[1].parameters(), strict=True):
        assert torch.equal(expected, got)


class Doubled(torch.nn.Module):
    """A parametrisation with a right_inverse, so a value can be assigned through it."""

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        return 2 * value

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        return value / 2


def test_forget_bias_and_chrono_reach_pruned_and_parametrised_biases():
    """forget_bias and init='chrono' are values of the effective bias: written into the unpruned
    bias (the mask then applies) or assigned through the parametrisation's right_inverse."""
    hidden = 4
    forget_rows = slice(hidden, 2 * hidden)
    layer = lstmkit.LSTM(3, hidden, forget_bias=2.5)
    pruned(layer, "bias_ih_l0")
    parametrize.register_parametrization(layer, "bias_hh_l0", Doubled())
    layer.reset_parameters()
    layer(torch.randn(2, 1, 3))  # pruning recomputes the masked bias before each call
    mask = layer.bias_ih_l0_mask[forget_rows]
    assert torch.equal(layer.bias_ih_l0[forget_rows], 2.5 * mask)
    assert torch.equal(layer.bias_hh_l0[forget_rows], torch.zeros(hidden))
    chrono = lstmkit.LSTM(3, hidden, init="chrono", chrono_max=50)
    parametrize.register_parametrization(chrono, "bias_ih_l0", Doubled())
    torch.manual_seed(0)
    chrono.reset_parameters()
    forget = chrono.bias_ih_l0[forget_rows]
    assert torch.equal(chrono.bias_ih_l0[:hidden], -forget)
    assert bool(((forget >= 0) & (forget <= np.log(49))).all())


def test_forget_bias_through_a_parametrisation_without_right_inverse_is_refused_by_name():
    layer = lstmkit.LSTM(3, 4, forget_bias=1.0)
    parametrize.register_parametrization(layer, "bias_ih_l0", torch.nn.Identity())
    with pytest.raises(ValueError, match=r"reset_parameters sets bias_ih_l0 \(forget_bias, init\) through its "
                                         r"parametrisation \(Identity\), which cannot take a value: .*right_inverse"):
        layer.reset_parameters()


@pytest.mark.parametrize("make, wrap, name, said", [
    (lambda: lstmkit.LSTM(3, 4, forget_bias=1.0), parametrizations.spectral_norm, "bias_ih_l0", "largest difference "),
    (lambda: lstmkit.LSTM(3, 4, init="orthogonal"), parametrizations.spectral_norm, "weight_hh_l0",
     "largest difference "),
    (lambda: lstmkit.LSTM(3, 4, forget_bias=1.0), parametrizations.weight_norm, "bias_hh_l0", "some not finite"),
    (lambda: lstmkit.CIFGLSTMCell(3, 4, forget_bias=1.0), parametrizations.spectral_norm, "bias_ih",
     "largest difference "),
])
def test_forget_bias_or_init_a_parametrisation_would_change_is_refused(make, wrap, name, said):
    """spectral_norm rescales what is written (forget rows of 0.46 for 1.0); weight_norm of a
    bias cannot hold the zeros written into bias_hh (NaN, which was named the "largest difference
    nan"): refused, not silently other values."""
    module = make()
    wrap(module, name)
    with pytest.raises(ValueError, match=rf"reset_parameters sets {name} \(forget_bias, init\) through its "
                                         rf"parametrisation \(_\w+\), which gives back other values \({said}"
                                         r"[^n]*\): it cannot hold them"):
        module.reset_parameters()


def test_forget_bias_under_the_hook_based_weight_norm_is_refused_and_plain_reset_works():
    """torch.nn.utils.weight_norm (deprecated) recomputes the bias from its _g and _v at every
    call: a value written into it would be lost. Without forget_bias, reset re-initialises _g
    and _v as torch.nn does (it stopped at KeyError 'weight_hh_l0_g')."""
    layers = [kind(3, 4) for kind in (torch.nn.LSTM, lstmkit.LSTM)]
    for layer in layers:
        torch.nn.utils.weight_norm(layer, "weight_hh_l0")
        torch.manual_seed(2)
        layer.reset_parameters()
    for expected, got in zip(layers[0].parameters(), layers[1].parameters(), strict=True):
        assert torch.equal(expected, got)
    layer = lstmkit.LSTM(3, 4, forget_bias=1.0)
    torch.nn.utils.weight_norm(layer, "bias_ih_l0")
    with pytest.raises(ValueError, match=r"reset_parameters sets bias_ih_l0 \(forget_bias, init\), which a hook "
                                         r"recomputes from other parameters at every call"):
        layer.reset_parameters()


def test_a_pruned_layer_steps_and_gives_cell_modules_its_current_weights():
    """Pruning recomputes weight = weight_orig * mask in a hook before each call: step() runs
    the module's hooks, and from_layer reads orig * mask, so neither uses the weight of before
    reset_parameters (or of before an optimizer step)."""
    layer = lstmkit.LSTM(3, 4)
    prune.l1_unstructured(layer, "weight_hh_l0", 0.5)
    torch.manual_seed(1)
    layer.reset_parameters()
    x, h0 = torch.randn(2, 3), (torch.randn(1, 2, 4), torch.randn(1, 2, 4))
    cell = lstmkit.LSTMCell.from_layer(layer)
    stepped, (h, c) = layer.step(x, h0)
    full, _ = layer(x.unsqueeze(0), h0)
    assert torch.equal(stepped, full[0])
    assert torch.equal(cell.weight_hh, layer.weight_hh_l0_orig * layer.weight_hh_l0_mask)


class Counted(torch.nn.Module):
    """An identity parametrisation that counts its evaluations."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return value


@pytest.mark.parametrize("name", ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "weight_hh_l1"])
def test_a_parametrised_weight_is_computed_once_per_call(name):
    """Reading the input's expected dtype and device does not compute weight_ih_l0 (it was
    computed three more times per call, each advancing a parametrisation such as spectral_norm)."""
    layer = lstmkit.LSTM(3, 4, num_layers=2)
    counted = Counted()
    parametrize.register_parametrization(layer, name, counted)
    counted.calls = 0  # registering evaluates it once
    layer(torch.randn(5, 2, 3))
    layer.step(torch.randn(2, 3))
    repr(layer)  # names the engine, for the parameters' device, without computing a weight
    assert counted.calls == 2


class ToDouble(torch.nn.Module):
    def forward(self, value: torch.Tensor) -> torch.Tensor:
        return value.double()


def test_a_parametrisation_that_changes_the_dtype_sets_the_dtype_the_input_needs():
    """The input is checked against the weights the call computes (float64 here), as torch.nn
    checks it, not against the float32 tensors they are made from."""
    reference, layer = torch.nn.LSTM(3, 4), lstmkit.LSTM(3, 4)
    layer.load_state_dict(reference.state_dict())
    for module in (reference, layer):
        for name in [name for name, _ in module.named_parameters()]:
            parametrize.register_parametrization(module, name, ToDouble(), unsafe=True)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    assert_close(layer(x)[0], reference(x)[0], "output")
    with pytest.raises(ValueError, match=re.escape("input dtype must match the layer's parameters (torch.float64), "
                                                   "got torch.float32")):
        layer(x.float())


RNN_BASE_CASES = [
    (torch.nn.LSTM, lstmkit.LSTM, {}), (torch.nn.LSTM, lstmkit.LSTM, {"proj_size": 2}),
    (torch.nn.GRU, lstmkit.GRU, {"batch_first": True, "num_layers": 2, "bidirectional": True}),
    (torch.nn.RNN, lstmkit.RNN, {"nonlinearity": "relu"}),
]


@pytest.mark.parametrize("torch_type, lstmkit_type, options", RNN_BASE_CASES)
def test_rnn_base_helpers_give_torch_nn_results(torch_type, lstmkit_type, options):
    """check_forward_args, get_expected_hidden_size, permute_hidden, ...: code that calls
    torch.nn.RNNBase's helpers on its RNN gets the same answers, and the same errors."""
    reference, layer = torch_type(3, 4, **options), lstmkit_type(3, 4, **options)
    x = torch.randn(2, 5, 3) if layer.batch_first else torch.randn(5, 2, 3)  # 2 sequences of 5 steps
    packed = pack_padded_sequence(x, [3, 5], batch_first=layer.batch_first, enforce_sorted=False)
    for data, batch_sizes in ((x, None), (packed.data, packed.batch_sizes)):
        expected = reference.get_expected_hidden_size(data, batch_sizes)
        assert layer.get_expected_hidden_size(data, batch_sizes) == expected
    h = torch.randn(layer.num_layers * layer.num_directions, 2, layer.output_size)
    state = (h, torch.randn(layer.num_layers * layer.num_directions, 2, 4)) if torch_type is torch.nn.LSTM else h
    layer.check_forward_args(x, state, None)
    reference.check_forward_args(x, state, None)
    permuted = [module.permute_hidden(state, packed.unsorted_indices) for module in (reference, layer)]
    for expected, got in zip(*(flatten_outputs(each) for each in permuted), strict=True):
        assert torch.equal(expected, got)
    wrong = torch.zeros(1, 9, layer.output_size)
    wrong_state = (wrong, state[1]) if torch_type is torch.nn.LSTM else wrong
    messages = []
    for module in (reference, layer):
        with pytest.raises(RuntimeError) as caught:
            module.check_forward_args(x, wrong_state, None)
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    with pytest.raises(RuntimeError, match=re.escape("input must have 3 dimensions, got 2 (shape (7, 3))")):
        layer.check_input(torch.randn(7, 3), None)
    if torch_type is torch.nn.LSTM:
        assert layer.get_expected_cell_size(x, None) == reference.get_expected_cell_size(x, None)


def test_a_refused_reset_leaves_every_weight_as_it_was():
    """The refusal comes after the uniform initialisation: it is undone (weight_norm of bias_hh
    had left NaN in the layer, and every weight re-drawn)."""
    layer = lstmkit.LSTM(3, 4, forget_bias=1.0)
    parametrizations.weight_norm(layer, "bias_hh_l0", dim=0)
    before = {name: value.clone() for name, value in layer.state_dict().items()}
    with pytest.raises(ValueError, match="it cannot hold them"):
        layer.reset_parameters()
    for name, value in layer.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0, equal_nan=True, msg=name)


class DoubledMask(prune.BasePruningMethod):
    """A pruning method whose mask is applied with a factor of 2."""

    PRUNING_TYPE = "unstructured"

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        mask = default_mask.clone()
        mask.view(-1)[::2] = 0
        return mask

    def apply_mask(self, module: torch.nn.Module) -> torch.Tensor:
        return super().apply_mask(module) * 2


def test_a_custom_pruning_method_and_a_pruned_then_parametrised_weight_read_as_their_hooks_compute_them():
    layer = lstmkit.LSTM(3, 4)
    DoubledMask.apply(layer, "weight_hh_l0")
    x, h0 = torch.randn(2, 3), (torch.randn(1, 2, 4), torch.randn(1, 2, 4))
    reference = torch.nn.LSTM(3, 4)
    full, _ = layer(x.unsqueeze(0), h0)  # the hook sets weight_hh_l0 = orig * mask * 2
    reference.load_state_dict({name: getattr(layer, name) for name in layer._flat_weights_names})
    assert torch.equal(layer.step(x, h0)[0], reference(x.unsqueeze(0), h0)[0][0])
    assert torch.equal(full, reference(x.unsqueeze(0), h0)[0])
    both, reference = lstmkit.LSTM(3, 4), torch.nn.LSTM(3, 4)
    for module in (both, reference):  # KeyError 'weight_hh_l0_orig' before
        prune.l1_unstructured(module, "weight_hh_l0", 0.5)
        weight_normed(module, "weight_hh_l0_orig")
        torch.manual_seed(4)
        module.reset_parameters()
    for expected, got in zip(reference.parameters(), both.parameters(), strict=True):
        assert torch.equal(expected, got)


class Encoder(lstmkit.LSTM):
    """A subclass whose forward takes other arguments and returns the output alone."""

    def forward(self, x):
        return super().forward(x)[0] * 2


def test_step_of_a_subclass_is_the_layers_step_whatever_its_forward():
    encoder = Encoder(3, 4).eval()
    plain = lstmkit.LSTM(3, 4).eval()
    plain.load_state_dict(encoder.state_dict())
    x = torch.randn(2, 3)
    ours, theirs = encoder.step(x), plain.step(x)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1][1], theirs[1][1])


def test_to_layer_writes_into_a_pruned_weight_of_the_layer():
    """Through the unpruned weight (it copied into a temporary orig * mask, and was lost)."""
    layer = lstmkit.LSTM(3, 4)
    prune.l1_unstructured(layer, "weight_hh_l0", 0.5)
    cell = lstmkit.LSTMCell.from_layer(layer)
    with torch.no_grad():
        cell.weight_hh.fill_(0.5)
    cell.to_layer(layer)
    assert torch.equal(layer.weight_hh_l0_orig, torch.full((16, 4), 0.5))
    assert torch.equal(lstmkit.LSTMCell.from_layer(layer).weight_hh, 0.5 * layer.weight_hh_l0_mask)


def test_step_after_an_optimizer_step_under_the_hook_based_spectral_norm_equals_the_call():
    """step() runs no hooks: the weight is computed as spectral_norm's hook computes it, from
    the current estimate (it reused the last call's weight, stale and with its graph freed)."""
    layer = lstmkit.LSTM(3, 4)
    torch.nn.utils.spectral_norm(layer, "weight_hh_l0")
    x, h0 = torch.randn(5, 2, 3), (torch.randn(1, 2, 4), torch.randn(1, 2, 4))
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.5)
    layer(x, h0)[0].sum().backward()
    optimizer.step()
    layer.eval()  # no power iteration in the call either
    stepped = layer.step(x[0], h0)[0]
    stepped.sum().backward()
    torch.testing.assert_close(stepped, layer(x[:1], h0)[0][0], rtol=1e-6, atol=1e-7)


def test_a_refused_to_layer_leaves_the_layer_as_it_was():
    layer = lstmkit.LSTM(3, 4)
    parametrizations.weight_norm(layer, "bias_hh_l0", dim=0)
    cell = lstmkit.LSTMCell.from_layer(layer)
    with torch.no_grad():
        cell.weight_ih.fill_(0.25)
        cell.bias_hh[0] = 0.0  # weight_norm of each element cannot hold a zero
    before = {name: value.clone() for name, value in layer.state_dict().items()}
    with pytest.raises(ValueError, match="to_layer sets the layer's bias_hh_l0 through its parametrisation"):
        cell.to_layer(layer)
    for name, value in layer.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_to_layer_through_pruning_refuses_what_the_pruned_weight_cannot_hold_and_writes_through_both():
    """A custom apply_mask (x 2) would change the weight read back: refused. A pruned weight whose
    unpruned one is parametrised is written through both (it was refused as a hook's)."""
    layer = lstmkit.LSTM(3, 4)
    DoubledMask.apply(layer, "weight_hh_l0")
    with pytest.raises(ValueError, match="to_layer sets the layer's weight_hh_l0 through its pruning"):
        lstmkit.LSTMCell.from_layer(layer).to_layer(layer)
    both = lstmkit.LSTM(3, 4, init="orthogonal")
    prune.l1_unstructured(both, "weight_hh_l0", 0.5)
    weight_normed(both, "weight_hh_l0_orig")
    cell = lstmkit.LSTMCell.from_layer(both)
    with torch.no_grad():
        cell.weight_hh.mul_(2)
    cell.to_layer(both)
    torch.testing.assert_close(lstmkit.LSTMCell.from_layer(both).weight_hh, cell.weight_hh)
    both.reset_parameters()  # orthogonal blocks written through the weight_norm of the unpruned weight
    for block in both.weight_hh_l0_orig.detach().split(4):
        torch.testing.assert_close(block @ block.T, torch.eye(4), rtol=0, atol=1e-5)


class WithHead(lstmkit.LSTM):
    def __init__(self) -> None:
        super().__init__(3, 4)
        self.head = torch.nn.Linear(4, 2)


def test_reset_parameters_of_a_subclass_with_its_own_submodule_draws_as_torch_nn():
    """torch.nn's reset_parameters draws every parameter it holds from U(-1/sqrt(H), 1/sqrt(H)),
    a subclass's own too (KeyError 'head.weight' before)."""
    reference = torch.nn.LSTM(3, 4)
    reference.head = torch.nn.Linear(4, 2)
    layer = WithHead()
    for module in (reference, layer):
        torch.manual_seed(5)
        module.reset_parameters()
    for expected, got in zip(reference.parameters(), layer.parameters(), strict=True):
        assert torch.equal(expected, got)


def test_a_pruned_cell_module_writes_its_pruned_weights_into_a_layer():
    """to_layer copies the cell module's weights as computed (it was refused: "do not match
    this module's (..., weight_hh_orig)")."""
    layer = lstmkit.LSTM(3, 4)
    cell = lstmkit.LSTMCell.from_layer(layer)
    prune.l1_unstructured(cell, "weight_hh", 0.5)
    cell.to_layer(layer)
    assert torch.equal(layer.weight_hh_l0, cell.weight_hh_orig * cell.weight_hh_mask)


def test_reset_parameters_of_a_parametrised_layer_on_the_meta_device():
    """The read-back check has no values to compare on the meta device (.item() failed)."""
    layer = lstmkit.LSTM(3, 4, forget_bias=1.0, device="meta")
    parametrizations.weight_norm(layer, "bias_ih_l0")
    layer.reset_parameters()
    assert layer.bias_ih_l0.device.type == "meta"


@pytest.mark.parametrize("make, name", [(lambda: lstmkit.LSTMCell(3, 4), "weight_hh"),
                                        (lambda: lstmkit.LSTM(3, 4), "weight_hh_l0")])
def test_the_hook_based_spectral_norm_trains_over_several_calls_before_backward_as_torch_nn(make, name):
    """A cell module in a time loop, a layer called twice: each call's power iteration writes
    into u and v, so the weight is divided by copies of them (the backward failed, "modified by
    an inplace operation"). The same numbers and gradients as torch.nn's."""
    module = make()
    reference = (torch.nn.LSTMCell if isinstance(module, lstmkit.LSTMCell) else torch.nn.LSTM)(3, 4)
    reference.load_state_dict(module.state_dict())
    x = torch.randn(5, 2, 3)
    losses = []
    for model in (module, reference):
        torch.manual_seed(3)
        torch.nn.utils.spectral_norm(model, name)
        if isinstance(model, (lstmkit.LSTMCell, torch.nn.LSTMCell)):
            h = c = torch.zeros(2, 4)
            for step in x:
                h, c = model(step, (h, c))
            loss = h.sum()
        else:
            loss = model(x)[0].sum() + model(x)[0].sum()
        loss.backward()
        losses.append((loss, getattr(model, name + "_orig").grad))
    torch.testing.assert_close(losses[0][0], losses[1][0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(losses[0][1], losses[1][1], rtol=1e-5, atol=1e-6)


# --- code written for torch.nn's RNNs that reaches into them -----------------------------------

def test_flatten_parameters_on_cpu_reads_no_weight_so_spectral_norm_does_not_iterate():
    """Codebases call flatten_parameters() at every forward; lstmkit's read every weight there,
    a spectral_norm's power iteration ran, and later outputs drifted from torch.nn's (1.7e-5)."""
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    outputs = []
    for library in (torch.nn, lstmkit):
        torch.manual_seed(0)
        layer = library.LSTM(4, 6, dtype=torch.float64)
        parametrizations.spectral_norm(layer, "weight_hh_l0")
        u = layer.parametrizations.weight_hh_l0[0]._u.clone()
        for _ in range(3):
            layer.flatten_parameters()
        assert torch.equal(layer.parametrizations.weight_hh_l0[0]._u, u), library.__name__
        outputs.append(layer.eval()(x)[0])
    assert torch.equal(*outputs)


class WeightDrop(torch.nn.Module):
    """salesforce/awd-lstm-lm's WeightDrop: the weight deleted from the layer's parameters, kept
    as `name_raw`, set again as a plain tensor before each call."""

    def __init__(self, module, names, dropout):
        super().__init__()
        self.module, self.names, self.dropout = module, names, dropout
        for name in names:
            weight = getattr(module, name)
            del module._parameters[name]
            module.register_parameter(name + "_raw", torch.nn.Parameter(weight.data))

    def forward(self, *arguments):
        for name in self.names:
            raw = getattr(self.module, name + "_raw")
            setattr(self.module, name, torch.nn.functional.dropout(raw, p=self.dropout, training=self.training))
        return self.module(*arguments)


def test_reset_parameters_names_a_weight_weight_drop_deleted_where_init_sets_it():
    """It blamed the deprecated weight_norm or spectral_norm, which were not there."""
    model = WeightDrop(lstmkit.LSTM(4, 6, init="orthogonal"), ["weight_hh_l0"], dropout=0.5)
    raw = model.module.weight_hh_l0_raw.detach().clone()
    for _ in range(2):  # deleted; then set as a plain tensor by a call
        with pytest.raises(ValueError, match=re.escape(
                "reset_parameters sets weight_hh_l0 (forget_bias, init), which is not a parameter of the LSTM any "
                "more (deleted, or replaced by a plain tensor, as AWD-LSTM's WeightDrop does): set the tensor it is "
                "computed from instead")):
            model.module.reset_parameters()
        assert torch.equal(model.module.weight_hh_l0_raw, raw)  # nothing re-initialised
        model(torch.randn(5, 2, 4))


def test_awd_lstm_s_weight_drop_moves_and_trains_as_torch_nn():
    """`model.cuda()` (here .double()) before the first call read the deleted weight: AttributeError."""
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    runs = []
    for library in (torch.nn, lstmkit):
        torch.manual_seed(0)
        model = WeightDrop(library.LSTM(4, 6), ["weight_hh_l0"], dropout=0.5).double()
        assert model.module._flat_weights[1] is None  # deleted, as torch.nn lists it
        torch.manual_seed(1)
        output = model(x)[0]
        output.sum().backward()
        runs.append((output, model.module.weight_hh_l0_raw.grad))
    for mine, theirs in zip(*runs, strict=True):
        assert_close(mine, theirs)


def drop_connect_lstm(base):
    """A DropConnect subclass of nn.LSTM, as public code writes it: `_flat_weights` assigned
    around the parent's forward, which runs on the list."""

    class DropConnectLSTM(base):
        def __init__(self, *arguments, drop_rate=0.0, **options):
            super().__init__(*arguments, **options)
            self.drop_rate = drop_rate

        def forward(self, input, hx=None):
            weights = self._flat_weights
            self._flat_weights = [torch.nn.functional.dropout(weight, self.drop_rate, self.training)
                                  if name.startswith("weight_hh") else weight
                                  for weight, name in zip(weights, self._flat_weights_names)]
            self.flatten_parameters()
            try:
                return super().forward(input, hx)
            finally:
                self._flat_weights = weights

    return DropConnectLSTM


def test_flat_weights_assigned_by_a_subclass_run_the_call_as_in_torch_nn():
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    runs = []
    for library in (torch.nn, lstmkit):
        torch.manual_seed(0)
        layer = drop_connect_lstm(library.LSTM)(3, 4, num_layers=2, drop_rate=0.5, dtype=torch.float64)
        torch.manual_seed(1)
        output, (h, c) = layer(x)
        (output.sum() + c.sum()).backward()
        runs.append((output, h, c, *(parameter.grad for parameter in layer.parameters())))
    for mine, theirs in zip(*runs, strict=True):
        assert_close(mine, theirs)
    assert not torch.equal(runs[1][0], lstmkit.LSTM(3, 4, num_layers=2, dtype=torch.float64).eval()(x)[0])


def test_an_assigned_flat_weights_list_holds_until_torch_nn_would_refresh_it():
    layer = lstmkit.LSTM(3, 4, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    plain = layer(x)[0]
    zeros = [torch.zeros_like(weight) for weight in layer._flat_weights]
    for refresh in (lambda: layer._init_flat_weights(), lambda: layer.to(torch.float64),
                    lambda: setattr(layer, "weight_ih_l0", torch.nn.Parameter(layer.weight_ih_l0.detach().clone()))):
        layer._flat_weights = zeros
        assert torch.equal(layer(x)[0], torch.zeros_like(plain)) and layer._flat_weights == zeros
        refresh()
        assert torch.equal(layer(x)[0], plain)
    with pytest.raises(ValueError, match=r"^_flat_weights takes one tensor per name of _flat_weights_names \(4\), "
                                         r"got 3$"):
        layer._flat_weights = zeros[:3]
    layer._flat_weights = zeros  # a copy runs on its own weights, as torch.nn's (its __setstate__ refreshes the list)
    assert torch.equal(copy.deepcopy(layer)(x)[0], plain) and torch.equal(layer(x)[0], torch.zeros_like(plain))


def test_an_element_written_into_flat_weights_runs_the_call_as_in_torch_nn():
    """torch.nn's forward reads its stored list, so `_flat_weights[i] = w` runs the next call on
    w; lstmkit's list was built at each read and the write was lost."""
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    runs = []
    for library in (torch.nn, lstmkit):
        torch.manual_seed(0)
        layer = library.LSTM(3, 4, dtype=torch.float64)
        plain = layer(x)[0]
        layer._flat_weights[1] = torch.zeros(16, 4, dtype=torch.float64)
        written = layer(x)[0]
        layer._init_flat_weights()
        runs.append((plain, written, layer(x)[0]))
    for mine, theirs in zip(*runs, strict=True):
        assert_close(mine, theirs)
    torch.manual_seed(0)
    without_recurrence = torch.nn.LSTM(3, 4, dtype=torch.float64)
    with torch.no_grad():
        without_recurrence.weight_hh_l0.zero_()
    assert_close(runs[1][1], without_recurrence(x)[0])
    assert_close(runs[1][2], runs[1][0])


def test_a_flat_weights_list_held_writes_into_the_weights_set_since_and_copies_as_a_plain_list():
    """torch.nn's list follows a weight set by name, so a write through a list read before
    keeps that weight; copied or pickled, the list is a plain one, without the layer."""
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    outputs = []
    for library in (torch.nn, lstmkit):
        torch.manual_seed(0)
        layer = library.LSTM(3, 4, dtype=torch.float64)
        held = layer._flat_weights
        layer.weight_hh_l0 = torch.nn.Parameter(torch.zeros(16, 4, dtype=torch.float64))
        held[2] = held[2]  # bias_ih_l0, as it is
        outputs.append(layer(x)[0])
        copies = (copy.copy(held), copy.deepcopy(held), pickle.loads(pickle.dumps(held)))
        assert [type(copied) for copied in copies] == [list] * 3
    assert_close(outputs[1], outputs[0])


@pytest.mark.parametrize("layer_type", ["LSTM", "GRU"])
@pytest.mark.parametrize("engine", ["auto", "fused", "reference"])
def test_a_pruned_weight_set_before_the_call_drops_an_assigned_list_as_in_torch_nn(layer_type, engine):
    """A pruning hook sets the weight by name before each call, after which torch.nn's call
    finds its weights changed and refreshes its list, dropping what a DropConnect subclass's
    forward assigned: torch.nn runs the pruned weights alone, and lstmkit dropped the
    recurrent weights as well."""
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    runs = []
    for library, options in ((torch.nn, {}), (lstmkit, {"engine": engine})):
        torch.manual_seed(0)
        layer = drop_connect_lstm(getattr(library, layer_type))(3, 4, drop_rate=0.5, dtype=torch.float64,
                                                                **options)
        prune.l1_unstructured(layer, "weight_ih_l0", amount=0.5)
        torch.manual_seed(1)
        output, _ = layer(x)
        output.sum().backward()
        runs.append((output, layer(x)[0], *(parameter.grad for parameter in layer.parameters())))
    for mine, theirs in zip(*runs, strict=True):
        assert_close(mine, theirs)
    unpruned = drop_connect_lstm(lstmkit.LSTM)(3, 4, drop_rate=0.5, dtype=torch.float64)  # no weight set by name
    torch.manual_seed(1)
    assert not torch.equal(unpruned(x)[0], unpruned.eval()(x)[0])


def test_a_pruned_drop_connect_layer_compiled_runs_as_eager():
    """A compiled call that left the mark of the weight its pruning hook set ran the recurrent
    weights the subclass dropped, 0.045 off the eager call (and torch.nn's)."""
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    layer = drop_connect_lstm(lstmkit.LSTM)(3, 4, drop_rate=0.5, dtype=torch.float64)
    prune.l1_unstructured(layer, "weight_ih_l0", amount=0.5)
    torch._dynamo.reset()
    compiled = torch.compile(layer, backend="eager")
    for _ in range(2):
        assert torch.equal(compiled(x)[0], layer(x)[0])


def test_a_weight_set_again_as_itself_joins_an_assigned_list_as_in_torch_nn():
    """torch.nn's __setattr__ writes a weight set by name into its list, and its call refreshes
    the list only where a weight is another tensor than at its last refresh; its __getstate__
    refreshes the list where a weight was set since."""
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    results = []
    for library in (torch.nn, lstmkit):
        torch.manual_seed(0)
        layer = library.LSTM(3, 4, dtype=torch.float64)
        layer._flat_weights = [torch.zeros_like(weight) for weight in layer._flat_weights]
        layer.weight_ih_l0 = layer.weight_ih_l0  # the same one: the list holds it now
        same = layer(x)[0]
        layer.weight_hh_l0 = torch.nn.Parameter(layer.weight_hh_l0.detach() * 2)  # another: a refresh at the call
        layer._flat_weights = [torch.zeros_like(weight) for weight in layer._flat_weights]
        copy.deepcopy(layer)
        results.append((same, layer(x)[0]))
    assert not torch.equal(results[1][0], torch.zeros_like(results[1][0]))
    for mine, theirs in zip(*results, strict=True):
        assert_close(mine, theirs)


def test_a_subclass_that_set_an_lstmkit_option_s_name_before_init_is_refused():
    """A DropConnect subclass kept its rate as self.recurrent_dropout, set before calling
    __init__, which set lstmkit's own option of that name to 0: trained without it, unsaid."""
    for base, name in ((lstmkit.LSTM, "recurrent_dropout"), (lstmkit.GRUCell, "engine")):
        class Subclass(base):
            def __init__(self, *arguments):
                setattr(self, name, 0.5)
                super().__init__(*arguments)

        with pytest.raises(TypeError, match=re.escape(
                f"Subclass sets self.{name} before calling lstmkit's __init__, which sets its own option of that "
                "name (one torch.nn's module lacks) and would replace the value: give the subclass's attribute "
                "another name")):
            Subclass(3, 4)


@pytest.mark.parametrize("module_type, shape", [("LSTM", (3, 2, 4)), ("GRUCell", (2, 4))])
def test_a_data_parallel_replica_runs_and_prints_as_torch_nn_s(module_type, shape):
    """A replica holds its weights as plain tensors: its repr raised StopIteration."""
    x = torch.randn(*shape)
    for library in (torch.nn, lstmkit):
        module = getattr(library, module_type)(4, 6)
        replica = module._replicate_for_data_parallel()
        for name, parameter in module._parameters.items():
            setattr(replica, name, parameter * 1.0)  # as torch.nn.parallel.replicate sets its copies
        for mine, theirs in zip(flatten_outputs(replica(x)), flatten_outputs(module(x)), strict=True):
            assert_close(mine, theirs)
        assert repr(replica).startswith(f"{module_type}(4, 6")


def test_an_assigned_flat_weights_list_gives_way_to_weights_swapped_in_as_in_torch_nn():
    """torch.func.functional_call after a DropConnect call ran the layer's own weights."""
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    results = []
    for library in (torch.nn, lstmkit):
        torch.manual_seed(0)
        layer = drop_connect_lstm(library.LSTM)(3, 4, drop_rate=0.5, dtype=torch.float64)
        layer(x)  # assigned, then restored
        zeros = {name: torch.zeros_like(parameter) for name, parameter in layer.named_parameters()}
        swapped = torch.func.functional_call(layer.eval(), zeros, (x,))[0]
        layer._flat_weights = [weight * 2 for weight in layer._flat_weights]
        layer._parameters["weight_hh_l0"] = torch.nn.Parameter(layer.weight_hh_l0.detach() * 3)  # swapped by hand
        results.append((swapped, layer(x)[0]))
    assert torch.equal(results[1][0], torch.zeros_like(results[1][0]))
    for mine, theirs in zip(*results, strict=True):
        assert_close(mine, theirs)

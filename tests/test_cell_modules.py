"""The cell modules: drop-ins for torch.nn's cells, one step of every cell equal to one step of
its layer, weights to and from a layer, save and load, double backward, autocast, errors."""

from __future__ import annotations

import copy
import io
import re

import pytest
import torch
from torch import nn

import lstmkit
from helpers import (
    ALL_CELL_PARAMS, ALL_CELLS, assert_close, assert_same_run, cell_id, flatten_outputs, triton_installed,
)

B, INPUT, HIDDEN = 3, 4, 5
F64 = torch.float64

TORCH_CELLS = [
    pytest.param(nn.LSTMCell, lstmkit.LSTMCell, {}, id="lstm"),
    pytest.param(nn.GRUCell, lstmkit.GRUCell, {}, id="gru"),
    pytest.param(nn.RNNCell, lstmkit.RNNCell, {"nonlinearity": "tanh"}, id="rnn-tanh"),
    pytest.param(nn.RNNCell, lstmkit.RNNCell, {"nonlinearity": "relu"}, id="rnn-relu"),
]
TRITON = pytest.param("triton", marks=triton_installed)
NAMED = {
    "lstm": lstmkit.LSTMCell, "gru": lstmkit.GRUCell, "rnn": lstmkit.RNNCell, "peephole": lstmkit.PeepholeLSTMCell,
    "cifg": lstmkit.CIFGLSTMCell, "layernorm": lstmkit.LayerNormLSTMCell,
}


def random_inputs(batch: tuple[int, ...], has_cell_state: bool, seed: int = 3):
    """x and a state, float64, requiring grad."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*batch, INPUT, generator=generator, dtype=F64).requires_grad_()
    h = torch.randn(*batch, HIDDEN, generator=generator, dtype=F64).requires_grad_()
    if not has_cell_state:
        return x, h
    return x, (h, torch.randn(*batch, HIDDEN, generator=generator, dtype=F64).requires_grad_())


def leaves(module: nn.Module, x: torch.Tensor, hx: object) -> dict[str, torch.Tensor]:
    named = {"x": x, **dict(module.named_parameters())}
    if isinstance(hx, tuple):
        named.update(h=hx[0], c=hx[1])
    elif hx is not None:
        named["h"] = hx
    return named


@pytest.mark.parametrize("torch_type, lstmkit_type, options", TORCH_CELLS)
def test_same_initial_weights_and_names_as_torch(torch_type, lstmkit_type, options):
    torch.manual_seed(0)
    reference = torch_type(INPUT, HIDDEN, **options)
    torch.manual_seed(0)
    cell = lstmkit_type(INPUT, HIDDEN, **options)
    assert list(cell.state_dict()) == list(reference.state_dict()) == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    for name, parameter in reference.state_dict().items():
        assert torch.equal(cell.state_dict()[name], parameter), name


@pytest.mark.parametrize("torch_type, lstmkit_type, options", TORCH_CELLS)
def test_without_bias_the_biases_are_none_as_in_torch(torch_type, lstmkit_type, options):
    """`if cell.bias_ih is not None: ...` works as on torch.nn's cells (it used to raise
    AttributeError); the biases stay out of the parameters and the state dict."""
    reference = torch_type(INPUT, HIDDEN, bias=False, **options)
    cell = lstmkit_type(INPUT, HIDDEN, bias=False, **options)
    for module in (reference, cell):
        assert module.bias_ih is None and module.bias_hh is None
    assert list(cell.state_dict()) == list(reference.state_dict()) == ["weight_ih", "weight_hh"]


@pytest.mark.parametrize("module, has_cell_state", [
    (lstmkit.LSTMCell, True), (lstmkit.GRUCell, False), (lstmkit.RNNCell, False),
    (lstmkit.LSTM, True), (lstmkit.GRU, False), (lstmkit.RNN, False),
])
def test_the_docstring_names_a_cell_state_only_where_there_is_one(module, has_cell_state):
    hidden_size_line = next(line.strip() for line in module.__doc__.splitlines() if "hidden_size:" in line)
    expected = "of the hidden state h (and of the cell state c)." if has_cell_state else "of the hidden state h."
    assert hidden_size_line == f"hidden_size: features {expected}"


@pytest.mark.parametrize("module, offers_chrono", [
    (lstmkit.LSTM, True), (lstmkit.PeepholeLSTM, True), (lstmkit.CIFGLSTM, True), (lstmkit.LayerNormLSTM, True),
    (lstmkit.Recurrent, True), (lstmkit.GRU, False), (lstmkit.RNN, False),
])
def test_the_docstring_offers_chrono_only_where_a_forget_gate_takes_it(module, offers_chrono):
    """GRU's and RNN's docstrings offered init="chrono", which they refuse: no forget gate."""
    assert ('"chrono"\n        (Tallec & Ollivier 2018' in module.__doc__) is offers_chrono
    assert ("forget_bias (keyword):" in module.__doc__) is offers_chrono


def test_the_docstring_projects_the_cells_own_output():
    """It gave h = W_hr (o ⊙ tanh(c')) for every cell; NOAF's output is o ⊙ c', LayerNorm's
    o ⊙ tanh(LN(c')): the projection reads h' of the step, whichever it is."""
    lines = " ".join(lstmkit.LayerNormLSTM.__doc__.split())
    assert "the cell's output (h' of its step: o ⊙ tanh(c') for the plain LSTM) is projected, h = W_hr h'" in lines
    assert "W_hr (o" not in lines
    assert "(W_ii, W_if, W_ig, W_io; a gate its switch removes has none)" in " ".join(lstmkit.LSTM.__doc__.split())


@pytest.mark.parametrize("engine", ["auto", "fused", TRITON, "reference"])
@pytest.mark.parametrize("torch_type, lstmkit_type, options", TORCH_CELLS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch", [(B,), (), (0,)], ids=["batched", "unbatched", "batch0"])
@pytest.mark.parametrize("given_state", [True, False], ids=["state", "zeros"])
def test_equals_torch_over_steps(torch_type, lstmkit_type, options, bias, batch, given_state, engine):
    """Three steps in a loop, the state fed back: outputs and every gradient as torch.nn's."""
    reference = torch_type(INPUT, HIDDEN, bias=bias, dtype=F64, **options)
    cell = lstmkit_type(INPUT, HIDDEN, bias=bias, dtype=F64, engine=engine, **options)
    cell.load_state_dict(reference.state_dict())
    x, hx = random_inputs(batch, torch_type is nn.LSTMCell)
    hx = hx if given_state else None

    def loop(module):
        state, outputs = hx, []
        for step in range(3):
            state = module(x * (step + 1), state)
            outputs.append(state)
        return outputs

    assert_same_run(loop(cell), loop(reference), leaves(cell, x, hx), leaves(reference, x, hx))


@pytest.mark.parametrize("engine", ["auto", "fused", TRITON])
@pytest.mark.parametrize("cell_name, options", ALL_CELL_PARAMS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
def test_one_step_equals_one_step_of_the_layer(cell_name, options, bias, batched, engine):
    """A cell module holding a layer's weights: its step is the layer's (reference engine, T = 1)."""
    torch.manual_seed(0)
    layer = lstmkit.Recurrent(cell_name, INPUT, HIDDEN, bias=bias, dtype=F64, engine="reference", **options)
    with torch.no_grad():  # LayerNorm gains and shifts away from their 1 and 0
        for parameter in layer.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    cell = NAMED[cell_name].from_layer(layer, engine=engine)
    x, hx = random_inputs((B,) if batched else (), layer.cell.has_cell_state)
    as_layer_state = (lambda s: s.unsqueeze(0))
    layer_hx = tuple(map(as_layer_state, hx)) if isinstance(hx, tuple) else as_layer_state(hx)
    output, state = layer(x.unsqueeze(0), layer_hx)
    layer_leaves = {"x": x, **{name.removesuffix("_l0"): p for name, p in layer.named_parameters()}}
    layer_leaves.update({"h": hx[0], "c": hx[1]} if isinstance(hx, tuple) else {"h": hx})
    expected = tuple(s.squeeze(0) for s in state) if isinstance(state, tuple) else state.squeeze(0)
    assert_same_run(cell(x, hx), expected, leaves(cell, x, hx), layer_leaves)


@pytest.mark.parametrize("engine", ["fused", TRITON])
@pytest.mark.parametrize("cell_name, options", ALL_CELL_PARAMS)
def test_a_step_without_gradients_gives_the_numbers_of_one_with(cell_name, options, engine):
    """Under no_grad (and where nothing requires a gradient) a step runs its kernel without
    the autograd.Function around it: the same h', c' and gates to the bit."""
    torch.manual_seed(0)
    cell = lstmkit.RecurrentCell(cell_name, INPUT, HIDDEN, dtype=F64, engine=engine, **options)
    x, hx = random_inputs((B,), cell.cell.has_cell_state)
    with_grad, gates = cell(x, hx, return_gates=True)
    with torch.no_grad():
        without, no_grad_gates = cell(x, hx, return_gates=True)
    frozen = lstmkit.RecurrentCell(cell_name, INPUT, HIDDEN, dtype=F64, engine=engine, **options).requires_grad_(False)
    frozen.load_state_dict(cell.state_dict())
    nothing_wanted, _ = frozen(x.detach(), tuple(s.detach() for s in hx) if isinstance(hx, tuple) else hx.detach(),
                               return_gates=True)
    for state in (without, nothing_wanted):
        for got, expected in zip(flatten_outputs(state), flatten_outputs(with_grad), strict=True):
            assert torch.equal(got, expected) and not got.requires_grad
    assert all(torch.equal(no_grad_gates[name], gate) for name, gate in gates.items())


@pytest.mark.parametrize("engine", ["auto", TRITON])
@pytest.mark.parametrize("cell_name, options", ALL_CELL_PARAMS)
def test_gates_are_those_the_layer_traces(cell_name, options, engine):
    torch.manual_seed(0)
    layer = lstmkit.Recurrent(cell_name, INPUT, HIDDEN, dtype=F64, engine="reference", **options)
    cell = lstmkit.RecurrentCell.from_layer(layer, engine=engine)
    x, hx = random_inputs((B,), layer.cell.has_cell_state)
    state, gates = cell(x, hx, return_gates=True)
    layer_hx = tuple(s.unsqueeze(0) for s in hx) if isinstance(hx, tuple) else hx.unsqueeze(0)
    _, _, trace = layer(x.unsqueeze(0), layer_hx, return_gates=True)
    assert gates.keys() == trace.gates.keys()
    for name, gate in gates.items():
        assert_close(gate, trace.gates[name][0, 0], name)
        assert not gate.requires_grad
    if cell_name == "lstm" and not options:  # the gates by hand: c' = f c + i g, h' = o tanh(c')
        assert_close(state[1], gates["forget"] * hx[1] + gates["input"] * gates["candidate"], "c'")
        assert_close(state[0], gates["output"] * torch.tanh(state[1]), "h'")
    _, unbatched = cell(x[0], tuple(s[0] for s in hx) if isinstance(hx, tuple) else hx[0], return_gates=True)
    for name, gate in unbatched.items():
        assert_close(gate, gates[name][0], f"unbatched {name}")


def test_a_trained_stack_stepped_by_hand():
    """from_layer of every layer and both directions: the cells reproduce the stack's output."""
    torch.manual_seed(0)
    lstm = lstmkit.LSTM(INPUT, HIDDEN, num_layers=2, bidirectional=True, dtype=F64)
    x = torch.randn(6, B, INPUT, dtype=F64)
    output, (h_n, c_n) = lstm(x)
    layer_input = x
    for layer in range(2):
        directions = []
        for direction in range(2):
            cell = lstmkit.LSTMCell.from_layer(lstm, layer, direction)
            steps = layer_input if direction == 0 else layer_input.flip(0)
            state, outputs = None, []
            for x_t in steps:
                state = cell(x_t, state)
                outputs.append(state[0])
            index = 2 * layer + direction
            assert_close(state[0], h_n[index], f"h_n[{index}]")
            assert_close(state[1], c_n[index], f"c_n[{index}]")
            stacked = torch.stack(outputs)
            directions.append(stacked if direction == 0 else stacked.flip(0))
        layer_input = torch.cat(directions, -1)
    assert_close(layer_input, output, "output")


def test_to_layer_writes_the_weights_back():
    torch.manual_seed(0)
    layer = lstmkit.PeepholeLSTM(INPUT, HIDDEN, num_layers=2, dtype=F64)
    cell = lstmkit.PeepholeLSTMCell.from_layer(layer, 1)
    with torch.no_grad():
        for parameter in cell.parameters():
            parameter.mul_(2)
    before = {name: p.clone() for name, p in layer.named_parameters()}
    cell.to_layer(layer, 1)
    for name, parameter in layer.named_parameters():
        if name.endswith("_l1"):
            assert torch.equal(parameter, getattr(cell, name.removesuffix("_l1"))), name
            assert torch.equal(parameter, 2 * before[name]), name
        else:
            assert torch.equal(parameter, before[name]), name


@pytest.mark.parametrize("cell_name, extras", [("peephole", ["peephole_i", "peephole_f", "peephole_o"]),
                                               ("layernorm", ["layernorm_ih_weight", "layernorm_cell_bias"])])
def test_extras_held_in_another_dtype_than_the_matrices_keep_it_through_from_layer_and_to_layer(cell_name, extras):
    """A bfloat16 layer may hold its extras in float32: from_layer rounded them to bfloat16, and
    a round trip wrote the rounded values back into the layer."""
    torch.manual_seed(0)
    layer = lstmkit.Recurrent(cell_name, INPUT, HIDDEN, dtype=torch.bfloat16)
    for name in extras:
        setattr(layer, f"{name}_l0", nn.Parameter(torch.randn(getattr(layer, f"{name}_l0").shape)))
    before = copy.deepcopy(layer.state_dict())
    module = NAMED[cell_name].from_layer(layer)
    assert {name: getattr(module, name).dtype for name in extras} == dict.fromkeys(extras, torch.float32)
    assert all(torch.equal(getattr(module, name), before[f"{name}_l0"]) for name in extras)
    by_hand = NAMED[cell_name](INPUT, HIDDEN, dtype=torch.bfloat16)
    for name, value in before.items():
        setattr(by_hand, name.removesuffix("_l0"), nn.Parameter(value.clone()))
    x = torch.randn(B, INPUT, dtype=torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(module(x)[0], by_hand(x)[0])
    module.to_layer(layer)
    assert all(torch.equal(value, before[name]) and value.dtype == before[name].dtype
               for name, value in layer.state_dict().items())


def test_to_layer_sets_a_parametrised_weight_through_its_parametrisation():
    """A layer's weight under weight_norm is computed: to_layer sets it through the
    parametrisation's right_inverse; one without right_inverse is refused, by name."""
    layer = lstmkit.LSTM(INPUT, HIDDEN, num_layers=2, bidirectional=True, dtype=F64)
    torch.nn.utils.parametrizations.weight_norm(layer, "weight_hh_l1_reverse")
    cell = lstmkit.LSTMCell.from_layer(layer, 1, 1)
    with torch.no_grad():
        cell.weight_hh.copy_(torch.randn_like(cell.weight_hh))
    cell.to_layer(layer, 1, 1)
    assert_close(layer.weight_hh_l1_reverse, cell.weight_hh, "the parametrised weight")

    class Squared(nn.Module):
        def forward(self, weight):
            return weight * weight

    torch.nn.utils.parametrize.register_parametrization(layer, "weight_ih_l0", Squared())
    with pytest.raises(ValueError, match=r"to_layer sets the layer's weight_ih_l0 through its parametrisation "
                                         r"\(Squared\), which cannot take a value: .*right_inverse"):
        lstmkit.LSTMCell.from_layer(layer).to_layer(layer)


@pytest.mark.parametrize("cell_name", ["lstm", "gru", "layernorm"])
def test_from_layer_carries_a_bias_set_to_none_and_steps_as_the_layer(cell_name):
    """A layer whose b_ih (and LayerNorm shift) was set to None: from_layer said "build both
    with the same bias" of a layer built with biases; the module now has them None too."""
    layer = lstmkit.Recurrent(cell_name, INPUT, HIDDEN, dtype=F64)
    layer.bias_ih_l0 = None
    if cell_name == "layernorm":
        layer.layernorm_cell_bias_l0 = None
    module = NAMED[cell_name].from_layer(layer)
    assert module.bias_ih is None and (cell_name != "layernorm" or module.layernorm_cell_bias is None)
    x = torch.randn(2, B, INPUT, dtype=F64)
    output, _ = layer(x)
    state = None
    for step in range(2):
        state = module(x[step], state)
        assert_close(state[0] if isinstance(state, tuple) else state, output[step], f"step {step}")
    module.to_layer(layer)
    if cell_name == "layernorm":  # a weight that is no bias set to None stays refused
        layer.layernorm_hh_weight_l0 = None
        with pytest.raises(ValueError, match=re.escape("layernorm_hh_weight_l0 is None, but only a bias may be set")):
            NAMED[cell_name].from_layer(layer)


@pytest.mark.parametrize("engine", ["fused", TRITON])
def test_a_layernorm_cell_norm_shift_set_to_none_counts_as_zero(engine):
    """The Triton kernels read a shift set to None (its key kept) as present, and added the
    cell state in its place."""
    torch.manual_seed(0)
    reference = lstmkit.LayerNormLSTMCell(INPUT, HIDDEN, dtype=F64, engine="reference")
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.normal_()
    cell = lstmkit.LayerNormLSTMCell(INPUT, HIDDEN, dtype=F64, engine=engine)
    cell.load_state_dict(reference.state_dict())
    reference.layernorm_cell_bias = cell.layernorm_cell_bias = None
    x, hx = random_inputs((B,), True)
    assert_same_run(cell(x, hx), reference(x, hx), leaves(cell, x, hx), leaves(reference, x, hx))


def test_from_layer_carries_the_cell_options_and_sizes():
    layer = lstmkit.RNN(INPUT, HIDDEN, num_layers=2, nonlinearity="relu", bias=False, bidirectional=True)
    cell = lstmkit.RNNCell.from_layer(layer, 1, 1)
    assert (cell.nonlinearity, cell.input_size, cell.hidden_size, cell.bias) == ("relu", 2 * HIDDEN, HIDDEN, False)
    assert torch.equal(cell.weight_hh, layer.weight_hh_l1_reverse)
    ablated = lstmkit.RecurrentCell.from_layer(lstmkit.LSTM(INPUT, HIDDEN, forget_gate=False))
    assert ablated.cell == lstmkit.cells.LSTMStep(forget_gate=False)
    assert ablated.weight_ih.shape == (3 * HIDDEN, INPUT)


@pytest.mark.parametrize("cell_name, options", ALL_CELL_PARAMS)
def test_double_backward(cell_name, options):
    """gradgradcheck of the fused step: its gradients are themselves differentiable."""
    torch.manual_seed(0)
    cell = lstmkit.RecurrentCell(cell_name, 3, 2, dtype=F64, engine="fused", **options)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, dtype=F64, generator=generator, requires_grad=True)
    h = torch.randn(2, 2, dtype=F64, generator=generator, requires_grad=True)
    c = torch.randn(2, 2, dtype=F64, generator=generator, requires_grad=True)
    parameters = tuple(cell.parameters())

    def step(x, h, c, *weights):
        module = lstmkit.RecurrentCell(cell_name, 3, 2, dtype=F64, engine="fused", **options)
        for name, weight in zip(dict(cell.named_parameters()), weights, strict=True):
            delattr(module, name)
            setattr(module, name, weight)
        return module(x, (h, c) if module.cell.has_cell_state else h)

    assert torch.autograd.gradgradcheck(step, (x, h, c, *parameters), fast_mode=True)


@pytest.mark.parametrize("engine", ["fused", TRITON])
@pytest.mark.parametrize("cell_name, options", ALL_CELL_PARAMS)
def test_double_backward_through_steps_that_share_their_weights(cell_name, options, engine):
    """create_graph=True over a loop of steps: each step's input state carries the earlier steps'
    history through the same weights, which the recomputed backward must not follow a second
    time. The weights' gradients and a penalty's second derivatives are the reference engine's."""
    torch.manual_seed(0)
    reference = lstmkit.RecurrentCell(cell_name, 3, 4, dtype=F64, engine="reference", **options)
    cell = lstmkit.RecurrentCell(cell_name, 3, 4, dtype=F64, engine=engine, **options)
    cell.load_state_dict(reference.state_dict())
    x = torch.randn(3, 2, 3, dtype=F64, requires_grad=True)
    weighting = torch.randn(2, 4, dtype=F64)

    def gradients(module):
        state = None
        for x_t in x:
            state = module(x_t, state)
        h = state[0] if isinstance(state, tuple) else state
        parameters = list(module.parameters())
        first = torch.autograd.grad((h * weighting).sum(), [*parameters, x], create_graph=True)
        second = torch.autograd.grad(sum(grad.pow(2).sum() for grad in first), parameters)
        return first, second

    for order, ours, theirs in zip(("first", "second"), gradients(cell), gradients(reference), strict=True):
        for index, (actual, expected) in enumerate(zip(ours, theirs, strict=True)):
            assert_close(actual, expected, f"{order}-order gradient {index}")


@pytest.mark.parametrize("engine", ["auto", "fused"])
def test_double_backward_equals_torch(engine):
    """A gradient penalty through nn.LSTMCell and lstmkit.LSTMCell: the same second derivatives."""
    reference = nn.LSTMCell(INPUT, HIDDEN, dtype=F64)
    cell = lstmkit.LSTMCell(INPUT, HIDDEN, dtype=F64, engine=engine)
    cell.load_state_dict(reference.state_dict())
    x, hx = random_inputs((B,), True)

    def penalty(module):
        h, c = module(x, hx)
        (d_x,) = torch.autograd.grad((h * c).sum(), x, create_graph=True)
        return d_x.pow(2).sum()

    for (name, actual), expected in zip(
        leaves(cell, x, hx).items(), torch.autograd.grad(penalty(reference), list(leaves(reference, x, hx).values()))
    ):
        assert_close(torch.autograd.grad(penalty(cell), actual)[0], expected, name)


@pytest.mark.parametrize("engine", ["fused", TRITON])
@pytest.mark.parametrize("cell_name", ["lstm", "peephole", "cifg", "rnn"])
def test_both_bias_gradients_are_torchs_and_apart(cell_name, engine):
    """Where both biases add into the pre-activations alike, the fused step and layer give
    them one sum as their gradient (as torch's LSTM cell does); autograd must still keep two
    tensors: zeroing one, or accumulating a second backward, leaves the other as expected."""
    torch.manual_seed(0)
    reference = lstmkit.Recurrent(cell_name, INPUT, HIDDEN, dtype=F64, engine="reference")
    layer = lstmkit.Recurrent(cell_name, INPUT, HIDDEN, dtype=F64, engine="fused")
    layer.load_state_dict(reference.state_dict())
    cell = NAMED[cell_name].from_layer(reference, engine=engine)
    xs = torch.randn(3, B, INPUT, dtype=F64)
    expected = torch.autograd.grad(reference(xs)[0].pow(2).sum(), reference.bias_ih_l0)[0]

    def stepped() -> torch.Tensor:
        state, loss = None, 0
        for x in xs:
            state = cell(x, state)
            loss = loss + (state[0] if isinstance(state, tuple) else state).pow(2).sum()
        return loss

    runs = [
        (stepped, cell.bias_ih, cell.bias_hh),
        (lambda: layer(xs)[0].pow(2).sum(), layer.bias_ih_l0, layer.bias_hh_l0),
    ]
    for loss, bias_ih, bias_hh in runs:
        loss().backward()
        assert bias_ih.grad.data_ptr() != bias_hh.grad.data_ptr()
        bias_ih.grad.zero_()
        assert_close(bias_hh.grad, expected, "bias_hh.grad after bias_ih.grad.zero_()")
        loss().backward()
        assert_close(bias_ih.grad, expected, "bias_ih.grad after a second backward")
        assert_close(bias_hh.grad, 2 * expected, "bias_hh.grad after a second backward")


@pytest.mark.parametrize("engine", ["auto", "fused", TRITON, "reference"])
@pytest.mark.parametrize("cell_name, options", [param for param in ALL_CELL_PARAMS if param.values[0] != "rnn"])
def test_the_returned_h_may_be_changed_in_place_before_backward(cell_name, options, engine):
    """`h[done] = 0` between steps, as reinforcement-learning loops reset finished episodes:
    backward gives the gradients of a copy of h changed (the step keeps h' only where its
    backward reads it: the Elman RNN's, as torch.nn.RNNCell's tanh does). The reference engine
    refused it for the LSTM without output gate, whose h' is tanh(c')."""
    torch.manual_seed(0)
    cell = lstmkit.RecurrentCell(cell_name, INPUT, HIDDEN, dtype=F64, engine=engine, **options)
    reference = lstmkit.RecurrentCell(cell_name, INPUT, HIDDEN, dtype=F64, engine="reference", **options)
    reference.load_state_dict(cell.state_dict())
    x = torch.randn(B, INPUT, dtype=F64, requires_grad=True)

    def two_steps(module, copied):
        state = module(x)
        h = state[0] if isinstance(state, tuple) else state
        if copied:
            h = h.clone()
            state = (h, state[1]) if isinstance(state, tuple) else h
        h[1] = 0
        return module(x, state)

    assert_same_run(two_steps(cell, copied=False), two_steps(reference, copied=True),
                    {"x": x, **dict(cell.named_parameters())}, {"x": x, **dict(reference.named_parameters())})


@pytest.mark.parametrize("engine", ["auto", "fused", TRITON, "reference"])
def test_an_lstm_without_output_gate_and_activation_returns_an_h_apart_from_c(engine):
    """h' = c' there: the reference engine returned one tensor as both, so that `h[done] = 0`
    changed c' too, without a word."""
    cell = lstmkit.LSTMCell(INPUT, HIDDEN, output_gate=False, output_activation=False, dtype=F64, engine=engine)
    h, c = cell(torch.randn(B, INPUT, dtype=F64))
    assert_close(h, c, "h' = c'")
    h[1] = 0
    assert c[1].abs().sum() > 0, "c' kept its values"


@pytest.mark.parametrize("engine", ["fused", TRITON])
@pytest.mark.parametrize("cell_name, options", ALL_CELL_PARAMS)
def test_a_loop_whose_loss_sums_every_h_gives_the_reference_gradients(cell_name, options, engine):
    """`loss = loss + h.sum()` over a loop: the last step's d h' comes broadcast from a scalar
    (strides 0), the earlier ones summed with the next step's."""
    torch.manual_seed(0)
    cell = lstmkit.RecurrentCell(cell_name, INPUT, HIDDEN, dtype=F64, engine=engine, **options)
    reference = lstmkit.RecurrentCell(cell_name, INPUT, HIDDEN, dtype=F64, engine="reference", **options)
    reference.load_state_dict(cell.state_dict())
    xs = torch.randn(3, B, INPUT, dtype=F64, requires_grad=True)

    def loop(module):
        state, loss = None, 0
        for x in xs:
            state = module(x, state)
            loss = loss + (state[0] if isinstance(state, tuple) else state).sum()
        return loss

    assert_same_run(loop(cell), loop(reference), {"x": xs, **dict(cell.named_parameters())},
                    {"x": xs, **dict(reference.named_parameters())})


@pytest.mark.parametrize("engine", ["fused", TRITON])
@pytest.mark.parametrize("cell_name, options", ALL_CELL_PARAMS)
def test_strided_states_give_the_reference_step(cell_name, options, engine):
    """A transposed h and a c expanded over the batch (a learned initial state): the
    reference engine's outputs and gradients (the Triton kernels read states row by row)."""
    torch.manual_seed(0)
    cell = lstmkit.RecurrentCell(cell_name, INPUT, HIDDEN, dtype=F64, engine=engine, **options)
    reference = lstmkit.RecurrentCell(cell_name, INPUT, HIDDEN, dtype=F64, engine="reference", **options)
    reference.load_state_dict(cell.state_dict())
    x = torch.randn(B, INPUT, dtype=F64, requires_grad=True)
    h = torch.randn(HIDDEN, B, dtype=F64, requires_grad=True)
    c = torch.randn(HIDDEN, dtype=F64, requires_grad=True)
    hx = (h.t(), c.expand(B, HIDDEN)) if cell.cell.has_cell_state else h.t()
    named = {"x": x, "h": h, "c": c}
    assert_same_run(cell(x, hx), reference(x, hx), named | dict(cell.named_parameters()),
                    named | dict(reference.named_parameters()))


@pytest.mark.parametrize("engine", ["fused", TRITON])
def test_peephole_gradients_of_a_step_are_three_tensors_apart(engine):
    """A step's three peephole gradients come from one product and one sum, as views of one
    result: zeroing one, or accumulating a second backward, leaves the others as the reference
    engine's."""
    torch.manual_seed(0)
    cell = lstmkit.PeepholeLSTMCell(INPUT, HIDDEN, dtype=F64, engine=engine)
    reference = lstmkit.PeepholeLSTMCell(INPUT, HIDDEN, dtype=F64, engine="reference")
    reference.load_state_dict(cell.state_dict())
    x, hx = random_inputs((B,), True)
    names = ["peephole_i", "peephole_f", "peephole_o"]
    expected = torch.autograd.grad(sum(part.pow(2).sum() for part in reference(x, hx)),
                                   [getattr(reference, name) for name in names])
    sum(part.pow(2).sum() for part in cell(x, hx)).backward()
    cell.peephole_i.grad.zero_()
    sum(part.pow(2).sum() for part in cell(x, hx)).backward()
    for name, twice in zip(names, expected, strict=True):
        assert_close(getattr(cell, name).grad, twice if name == "peephole_i" else 2 * twice, f"{name}.grad")


@pytest.mark.parametrize("engine", ["fused", TRITON])
@pytest.mark.parametrize("cell_name", ["lstm", "peephole", "cifg", "layernorm"])
def test_a_step_whose_only_gradient_is_a_strided_one_of_c(cell_name, engine):
    """d c' as autograd hands it from a loss on c' alone, read transposed and broadcast (not
    contiguous; d h' is zeros): the gradients of the reference engine's step."""
    torch.manual_seed(0)
    cell = NAMED[cell_name](INPUT, HIDDEN, dtype=F64, engine=engine)
    reference = NAMED[cell_name](INPUT, HIDDEN, dtype=F64, engine="reference")
    reference.load_state_dict(cell.state_dict())
    x, hx = random_inputs((B,), True)
    scale = torch.arange(1.0, B + 1, dtype=F64)

    def gradients(module):
        _, c = module(x, hx)
        loss = c.sum() + (c.t() * scale).sum()
        wanted = list(leaves(module, x, hx).values())
        return torch.autograd.grad(loss, wanted, allow_unused=True, materialize_grads=True)

    for name, actual, expected in zip(leaves(cell, x, hx), gradients(cell), gradients(reference), strict=True):
        assert_close(actual, expected, f"gradient of {name}")


@pytest.mark.parametrize("cell_name, options", [(name, options) for name, options in ALL_CELLS if not options])
def test_save_and_load_whole_module_with_weights_only(cell_name, options):
    cell = NAMED[cell_name](INPUT, HIDDEN, dtype=F64)
    model = {"cell": cell, "any": lstmkit.RecurrentCell(cell_name, INPUT, HIDDEN, bias=False)}
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer)  # weights_only=True, torch's default
    assert type(loaded["cell"]) is type(cell) and loaded["any"].cell == model["any"].cell
    x = torch.randn(B, INPUT, dtype=F64)
    for actual, expected in zip(loaded["cell"](x), cell(x)) if cell.cell.has_cell_state else [(loaded["cell"](x), cell(x))]:
        assert torch.equal(actual, expected)


@pytest.mark.parametrize("input_dtype, state_dtype", [
    (torch.float32, None), (torch.bfloat16, None), (torch.bfloat16, torch.float32), (torch.float32, torch.bfloat16),
], ids=["float32-zeros", "bfloat16-zeros", "bfloat16-float32-state", "float32-bfloat16-state"])
@pytest.mark.parametrize("parameters", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("engine", ["auto", "fused", TRITON, "reference"])
@pytest.mark.parametrize("torch_type, lstmkit_type, options", TORCH_CELLS)
def test_cpu_autocast_dtypes_as_torch_and_close_to_float32(
    torch_type, lstmkit_type, options, engine, parameters, input_dtype, state_dtype
):
    """Under CPU autocast torch.nn's LSTM and GRU cells return the autocast dtype promoted with
    the state's (zeros come in the input's dtype: bfloat16 input, a Linear's output under
    autocast, gives bfloat16), the RNN cell the autocast dtype: so does every engine. Half
    parameters of either kind go as float32 ones: autocast casts them alike."""
    reference = torch_type(INPUT, HIDDEN, **options)
    cell = lstmkit_type(INPUT, HIDDEN, engine=engine, **options)
    cell.load_state_dict(reference.state_dict())
    x = torch.randn(B, INPUT)
    hx = None
    if state_dtype is not None:
        h = torch.randn(B, HIDDEN)
        hx = (h, torch.randn(B, HIDDEN)) if torch_type is nn.LSTMCell else h
    full = cell(x, hx)
    reference.to(parameters), cell.to(parameters)
    if state_dtype is not None:
        hx = tuple(part.to(state_dtype) for part in hx) if isinstance(hx, tuple) else hx.to(state_dtype)
    with torch.autocast("cpu", torch.bfloat16):
        mixed, expected = cell(x.to(input_dtype), hx), reference(x.to(input_dtype), hx)
    mixed, expected, full = ([t] if isinstance(t, torch.Tensor) else list(t) for t in (mixed, expected, full))
    assert [t.dtype for t in mixed] == [t.dtype for t in expected]
    for actual, exact in zip(mixed, full, strict=True):
        assert (actual.float() - exact).abs().max() < 3e-2


@pytest.mark.parametrize("engine", ["auto", "fused", TRITON, "reference"])
@pytest.mark.parametrize("cell_name", sorted(NAMED))
def test_float64_input_and_state_under_cpu_autocast_run_as_float32_ones(cell_name, engine):
    """As a layer's: float64 input under autocast returned float64 from the LSTM family and GRU
    on the fused, Triton and reference engines, bfloat16 from the RNN, and `auto`'s native cells
    refused it (`mat1 and mat2 must have the same dtype`). It runs as the float32 input and
    state of its values, and the gradients come back in float64."""
    cell = NAMED[cell_name](INPUT, HIDDEN, engine=engine)
    x, hx = random_inputs((B,), cell.cell.has_cell_state)
    narrow = [part.detach().float() for part in ([x, *hx] if isinstance(hx, tuple) else [x, hx])]
    with torch.autocast("cpu", torch.bfloat16):
        expected = flatten_outputs(cell(narrow[0], tuple(narrow[1:]) if isinstance(hx, tuple) else narrow[1]))
        ours = flatten_outputs(cell(x, hx))
    assert [t.dtype for t in ours] == [t.dtype for t in expected]
    assert all(torch.equal(actual, exact) for actual, exact in zip(ours, expected, strict=True))
    sum(t.float().sum() for t in ours).backward()
    assert x.grad.dtype == F64 and bool(x.grad.abs().sum() > 0)


@pytest.mark.parametrize("engine", ["auto", "native", "fused", TRITON, "reference"])
@pytest.mark.parametrize("cell_name", ["lstm", "gru", "rnn"])
def test_float64_cells_under_cpu_autocast_run_input_and_state_of_any_dtype_in_float64(cell_name, engine):
    """As a float64 layer: float32 input or state crashed on the native engine, `auto`'s choice
    (`mat1 and mat2 must have the same dtype, but got BFloat16 and Double`). They run as the
    float64 ones of their values, and the gradients come back in float32."""
    cell = NAMED[cell_name](INPUT, HIDDEN, engine=engine, dtype=F64)
    x, hx = random_inputs((B,), cell.cell.has_cell_state)
    parts = [x, *hx] if isinstance(hx, tuple) else [x, hx]
    narrow = [part.detach().float().requires_grad_() for part in parts]
    narrow_hx = tuple(narrow[1:]) if isinstance(hx, tuple) else narrow[1]
    exact = flatten_outputs(cell(narrow[0].double(), tuple(part.double() for part in narrow[1:])
                                 if isinstance(hx, tuple) else narrow[1].double()))
    with torch.autocast("cpu", torch.bfloat16):
        ours = flatten_outputs(cell(narrow[0], narrow_hx))
    assert all(actual.dtype == F64 and torch.equal(actual, expected)
               for actual, expected in zip(ours, exact, strict=True))
    sum(t.sum() for t in ours).backward()
    assert all(part.grad.dtype == torch.float32 for part in narrow)


@pytest.mark.parametrize("engine", ["fused", TRITON])
@pytest.mark.parametrize("cell_name, options", ALL_CELL_PARAMS)
def test_cpu_autocast_matches_the_reference_engine_in_the_same_precision(cell_name, options, engine):
    """Under CPU bfloat16 autocast, a step's h and every parameter's gradient are the reference
    layer's to bfloat16 rounding."""
    torch.manual_seed(0)
    layer = lstmkit.Recurrent(cell_name, INPUT, HIDDEN, engine="reference", **options)
    cell = lstmkit.RecurrentCell.from_layer(layer, engine=engine)
    x = torch.randn(B, INPUT)
    with torch.autocast("cpu", torch.bfloat16):
        state = cell(x)
        output, _ = layer(x.unsqueeze(0))
    h = state[0] if isinstance(state, tuple) else state
    assert (h.float() - output[0].float()).abs().max() < 1e-2
    actual = torch.autograd.grad(h.float().pow(2).sum(), list(cell.parameters()))
    expected = torch.autograd.grad(output[0].float().pow(2).sum(), list(layer.parameters()))
    for (name, _), a, e in zip(cell.named_parameters(), actual, expected, strict=True):
        assert (a - e).abs().max() < 2e-2 * (1 + e.abs().max()), name


@pytest.mark.parametrize("cell_name", ["lstm", "peephole"])
def test_parametrised_and_pruned_weights_are_the_ones_a_step_uses(cell_name):
    """A step reads its parameters from the module's parameter table where they are there, and
    as attributes where torch.nn.utils moved them out (parametrize, prune)."""
    from torch.nn.utils import parametrize, prune

    class Doubled(nn.Module):
        def forward(self, weight):
            return 2 * weight

    cell = NAMED[cell_name](INPUT, HIDDEN, dtype=F64)
    plain = NAMED[cell_name](INPUT, HIDDEN, dtype=F64)
    x, state = random_inputs((B,), True)
    with torch.no_grad():
        plain.load_state_dict(cell.state_dict())
        plain.weight_hh.mul_(2)
        if cell_name == "peephole":
            plain.peephole_i.mul_(2)
    parametrize.register_parametrization(cell, "weight_hh", Doubled())
    if cell_name == "peephole":
        parametrize.register_parametrization(cell, "peephole_i", Doubled())
    for got, expected in zip(cell(x, state), plain(x, state), strict=True):
        assert_close(got, expected)
    prune.l1_unstructured(cell, "weight_ih", amount=0.5)
    with torch.no_grad():
        plain.weight_ih.mul_(cell.weight_ih_mask)
    assert "weight_ih" not in cell._parameters and int(cell.weight_ih_mask.sum()) == cell.weight_ih.numel() // 2
    for got, expected in zip(cell(x, state), plain(x, state), strict=True):
        assert_close(got, expected)


@pytest.mark.parametrize("layer_type, module_type", [(lstmkit.PeepholeLSTM, lstmkit.PeepholeLSTMCell),
                                                      (lstmkit.CIFGLSTM, lstmkit.RecurrentCell)])
def test_from_layer_carries_the_forget_bias_which_reset_parameters_sets_again(layer_type, module_type):
    """It was dropped: the weights were the layer's, but a reset of the module lost the bias."""
    layer = layer_type(INPUT, HIDDEN, num_layers=2, bidirectional=True, forget_bias=1.5)
    module = module_type.from_layer(layer, 1, 1)
    assert module.forget_bias == 1.5 and torch.equal(module.bias_ih, layer.bias_ih_l1_reverse)
    module.reset_parameters()
    expected = lstmkit.RecurrentCell(layer.cell, 2 * HIDDEN, HIDDEN, forget_bias=1.5)
    forget = slice(0, HIDDEN) if layer.cell.name == "cifg" else slice(HIDDEN, 2 * HIDDEN)  # CIFG's: 1 - input
    assert torch.equal(module.bias_ih[forget], expected.bias_ih[forget])
    assert torch.equal(module.bias_ih[forget].abs(), torch.full((HIDDEN,), 1.5))
    assert lstmkit.GRUCell.from_layer(lstmkit.GRU(INPUT, HIDDEN)).forget_bias is None


def test_forget_bias_and_repr():
    cell = lstmkit.CIFGLSTMCell(INPUT, HIDDEN, forget_bias=2.0)
    assert torch.equal(cell.bias_ih[:HIDDEN], torch.full((HIDDEN,), -2.0))  # f = 1 - i starts at σ(2)
    assert torch.equal(cell.bias_hh[:HIDDEN], torch.zeros(HIDDEN))
    lstm = lstmkit.LSTMCell(INPUT, HIDDEN, forget_bias=1.0)
    assert torch.equal(lstm.bias_ih[HIDDEN : 2 * HIDDEN], torch.ones(HIDDEN))
    assert repr(lstm) == "LSTMCell(4, 5, forget_bias=1.0, engine=native)"
    assert repr(lstmkit.LSTMCell(INPUT, HIDDEN, forget_gate=False, bias=False)) == (
        "LSTMCell(4, 5, forget_gate=False, bias=False, engine=fused)"
    )
    assert repr(lstmkit.RecurrentCell("rnn", 4, 5, nonlinearity="relu", engine="reference")) == (
        "RecurrentCell('rnn', 4, 5, nonlinearity='relu', engine=reference)"
    )


def test_the_step_math_and_the_modules_have_different_names():
    assert lstmkit.LSTMCell is lstmkit.nn.LSTMCell and issubclass(lstmkit.LSTMCell, nn.Module)
    assert not hasattr(lstmkit.cells, "LSTMCell")
    assert lstmkit.cells.CELLS["lstm"] is lstmkit.cells.LSTMStep


ERRORS = [
    (lambda c: c(torch.randn(B, 6)), ValueError,
     "LSTMCell: input.size(-1) must equal input_size=4, got 6 (input shape (3, 6))"),
    (lambda c: c(torch.randn(2, B, INPUT)), ValueError,
     "LSTMCell: input must be 2-D (batch, input_size) or 1-D (input_size,) unbatched, got 3-D with shape (2, 3, 4)"),
    (lambda c: c(torch.randn(B, INPUT), (torch.randn(B, 6), torch.randn(B, HIDDEN))), ValueError,
     "LSTMCell: hx[0] (h) must have shape (3, 5) (batch, hidden_size) for input of shape (3, 4), got (3, 6)"),
    (lambda c: c(torch.randn(B, INPUT), (torch.randn(B, HIDDEN), torch.randn(2, HIDDEN))), ValueError,
     "LSTMCell: hx[1] (c) must have shape (3, 5) (batch, hidden_size) for input of shape (3, 4), got (2, 5)"),
    (lambda c: c(torch.randn(INPUT), (torch.randn(1, HIDDEN), torch.randn(1, HIDDEN))), ValueError,
     "LSTMCell: hx[0] (h) must have shape (5,) (hidden_size,) for unbatched input of shape (4,), got (1, 5)"),
    (lambda c: c(torch.randn(B, INPUT), torch.randn(B, HIDDEN)), TypeError,
     "LSTMCell: hx must be a tuple (h, c) of two tensors, got Tensor of shape (3, 5)"),
    (lambda c: c(torch.randn(B, INPUT, dtype=F64)), RuntimeError,  # torch.nn.LSTMCell's, and a ValueError
     "LSTMCell: input dtype must match the cell's parameters (torch.float32), got torch.float64; convert the input "
     "with input.to(torch.float32) or the cell with cell.to(torch.float64)"),
    (lambda c: c(torch.randn(B, INPUT), (torch.randn(B, HIDDEN), torch.randn(B, HIDDEN, dtype=F64))), RuntimeError,
     "LSTMCell: hx[1] (c) dtype must match the parameters (torch.float32), got torch.float64"),
    (lambda c: lstmkit.LSTMCell.from_layer(lstmkit.GRU(INPUT, HIDDEN)), TypeError,
     "LSTMCell.from_layer takes a layer of cell lstm, got one of cell gru; lstmkit.RecurrentCell.from_layer takes any cell"),
    (lambda c: lstmkit.LSTMCell.from_layer(lstmkit.LSTM(INPUT, HIDDEN), 1), ValueError,
     "layer must be an int in [0, 0] for this layer, got 1"),
    (lambda c: lstmkit.LSTMCell.from_layer(lstmkit.LSTM(INPUT, HIDDEN, proj_size=2)), ValueError,
     "a cell module has no projection; the layer has proj_size=2, so its steps cannot be taken by a cell module"),
    (lambda c: lstmkit.LSTMCell.from_layer(lstmkit.LSTM(INPUT, HIDDEN, zoneout=0.5)), ValueError,
     "a cell module has no zoneout; the layer has zoneout=(0.5, 0.5), which changes its steps in evaluation too, "
     "so step it with layer.step() instead"),
    (lambda c: lstmkit.LSTMCell.from_layer(torch.nn.LSTM(INPUT, HIDDEN)), TypeError,
     "expected an lstmkit layer (lstmkit.LSTM, ...), got torch.nn.modules.rnn.LSTM; a torch.nn layer's weights "
     "load into the lstmkit layer of the same arguments (load_state_dict) first"),
    (lambda c: c.to_layer(torch.compile(lstmkit.LSTM(INPUT, HIDDEN))), TypeError,
     "expected an lstmkit layer (lstmkit.LSTM, ...), got torch._dynamo.eval_frame.OptimizedModule; give the layer "
     "torch.compile wrapped, its _orig_mod, which holds the same weights"),
    (lambda c: c.to_layer(lstmkit.LSTM(INPUT, HIDDEN, forget_gate=False)), ValueError,
     "to_layer needs a layer of this module's cell lstm, got one of cell lstm(forget_gate=False)"),
    (lambda c: c.to_layer(lstmkit.LSTM(INPUT, HIDDEN, bias=False)), ValueError,
     "the layer's parameters (weight_ih, weight_hh) do not match this module's (weight_ih, weight_hh, bias_ih, "
     "bias_hh): build both with the same bias, and set the same biases to None"),
    (lambda c: c.to_layer(lstmkit.LSTM(INPUT + 1, HIDDEN)), ValueError,
     "the layer's weight_ih has shape (20, 5), this module's (20, 4): build both with the same input_size and hidden_size"),
]


@pytest.mark.parametrize("call, error, message", ERRORS, ids=range(len(ERRORS)))
def test_errors_name_expected_and_received(call, error, message):
    with pytest.raises(error) as raised:
        call(lstmkit.LSTMCell(INPUT, HIDDEN))
    assert str(raised.value) == message


@pytest.mark.parametrize("build, what", [(lambda: lstmkit.PeepholeLSTMCell(INPUT, HIDDEN), "cell"),
                                         (lambda: lstmkit.PeepholeLSTM(INPUT, HIDDEN), "layer")])
def test_an_engine_set_after_building_is_checked_as_when_building(build, what):
    """`cell.engine = "native"` ended in a bare KeyError at the call, and a misspelt name was
    kept (and printed by repr) without a word."""
    module = build()
    with pytest.raises(ValueError, match=re.escape("engine must be one of auto, native, fused, triton, reference, got "
                                                   "'Fused'")):
        module.engine = "Fused"
    with pytest.raises(ValueError, match=re.escape(
            f"engine='native' cannot run this {what}: cell 'peephole' has no native kernel (native runs lstm, gru and "
            "rnn); use engine='auto' or 'fused'")):
        module.engine = "native"
    assert module.engine == "auto"
    module.engine = "reference"
    assert module.engine == "reference" and copy.deepcopy(module).engine == "reference"


def test_a_layers_engine_set_after_building_must_run_its_regularisers():
    layer = lstmkit.LSTM(INPUT, HIDDEN, zoneout=0.1)
    with pytest.raises(ValueError, match=re.escape(
            "engine='native' cannot run zoneout; use engine='auto' (engines that run it: fused, triton, reference)")):
        layer.engine = "native"


@pytest.mark.parametrize("name, value, message", [
    ("zoneout", (0.1,), "zoneout must be a probability z or a pair (z_c, z_h), got (0.1,)"),
    ("zoneout", (2.0, 0.0), "zoneout must be a probability in [0, 1), got 2.0"),
    ("recurrent_dropout", 1.0, "recurrent_dropout must be a probability in [0, 1), got 1.0"),
    ("input_dropout", -0.5, "input_dropout must be a probability in [0, 1), got -0.5"),
    ("weight_dropout", "0.1", "weight_dropout must be a probability in [0, 1), got '0.1'"),
    ("forget_bias", float("nan"), "forget_bias must be a finite number, got nan"),
])
def test_a_layers_options_set_after_building_are_checked_as_when_building(name, value, message):
    """Set unchecked, a float zoneout broke every call, a 1-tuple shifted weight_dropout into
    zoneout without a word, and a dropout of 1 gave NaN; the layer keeps what it had."""
    layer = lstmkit.LSTM(INPUT, HIDDEN, weight_dropout=0.3)
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        setattr(layer, name, value)
    assert layer.regularisation == lstmkit.engines.Regularisation(0.0, 0.0, 0.0, 0.0, 0.3) and layer.forget_bias is None


def test_options_set_after_building_take_the_constructors_form():
    """zoneout z is (z, z), or (0, z) for a cell without a cell state; forget_bias acts at
    reset_parameters(), as an initialisation; native refuses a regulariser it cannot run."""
    layer, gru = lstmkit.LSTM(INPUT, HIDDEN), lstmkit.GRU(INPUT, HIDDEN)
    layer.zoneout, gru.zoneout, layer.weight_dropout = 0.1, 0.2, 1 / 4
    assert (layer.zoneout, gru.zoneout, layer.regularisation.weight_dropout) == ((0.1, 0.1), (0.0, 0.2), 0.25)
    layer.forget_bias = 2
    layer.reset_parameters()
    assert layer.forget_bias == 2.0 and torch.equal(layer.bias_ih_l0[HIDDEN : 2 * HIDDEN], torch.full((HIDDEN,), 2.0))
    chrono = lstmkit.LSTM(INPUT, HIDDEN, init="chrono", chrono_max=10)
    chrono.forget_bias = 1.0  # checked beside init where both act
    with pytest.raises(ValueError, match=re.escape("init='chrono' and forget_bias=1.0 both set the forget gate's")):
        chrono.reset_parameters()
    native = lstmkit.LSTM(INPUT, HIDDEN, engine="native")
    with pytest.raises(ValueError, match=re.escape("engine='native' cannot run zoneout; use engine='auto'")):
        native.zoneout = 0.1
    assert native.zoneout == (0.0, 0.0)
    cell = lstmkit.LSTMCell(INPUT, HIDDEN)
    with pytest.raises(TypeError, match=re.escape("forget_bias must be a number or None, got '1' (str)")):
        cell.forget_bias = "1"
    cell.forget_bias = 1
    cell.reset_parameters()
    assert cell.forget_bias == 1.0 and torch.equal(cell.bias_ih[HIDDEN : 2 * HIDDEN], torch.ones(HIDDEN))


def test_initialisations_set_after_building_are_checked_together_where_they_act():
    """init and chrono_max set after building were taken as given: chrono overwrote a
    forget_bias the constructor refuses beside it, and without chrono_max, or on a GRU,
    reset_parameters() ended in a bare TypeError from inside."""
    layer = lstmkit.LSTM(INPUT, HIDDEN, forget_bias=1.0)
    layer.init = "chrono"
    assert layer.init == ("chrono",)
    before = copy.deepcopy(layer.state_dict())
    with pytest.raises(ValueError, match=re.escape("init='chrono' and forget_bias=1.0 both set the forget gate's")):
        layer.reset_parameters()
    layer.forget_bias = None
    with pytest.raises(ValueError, match=re.escape("init='chrono' needs chrono_max, the longest dependency expected "
                                                   "in steps, a finite number above 2; got chrono_max=None")):
        layer.reset_parameters()
    assert all(torch.equal(before[name], value) for name, value in layer.state_dict().items())
    layer.chrono_max = 10
    torch.manual_seed(0)
    layer.reset_parameters()
    torch.manual_seed(0)
    built = lstmkit.LSTM(INPUT, HIDDEN, init="chrono", chrono_max=10)
    assert all(torch.equal(built.state_dict()[name], value) for name, value in layer.state_dict().items())
    with pytest.raises(ValueError, match=re.escape("chrono_max must be None or a finite number above 2, the longest "
                                                   "dependency init='chrono' expects in steps; got 1")):
        layer.chrono_max = 1
    plain = lstmkit.LSTM(INPUT, HIDDEN)
    plain.chrono_max = 10
    with pytest.raises(ValueError, match=re.escape("chrono_max goes with init='chrono', got chrono_max=10 with "
                                                   "init=None")):
        plain.reset_parameters()
    with pytest.raises(ValueError, match=re.escape("init must be None, 'chrono' or 'orthogonal', or a sequence of "
                                                   "them, got 'chrno'")):
        layer.init = "chrno"
    gru = lstmkit.GRU(INPUT, HIDDEN)
    gru.init, gru.chrono_max = "chrono", 10
    with pytest.raises(ValueError, match=re.escape("init='chrono' sets the forget gate's bias; cell gru has no forget "
                                                   "gate")):
        gru.reset_parameters()


def test_a_subclass_reusing_an_option_name_is_told_why_it_is_refused():
    """A DropConnect-style subclass keeping its own `weight_dropout` (None) after lstmkit's
    __init__ was refused as if it had set lstmkit's option wrongly."""
    class DropConnect(lstmkit.LSTM):
        def __init__(self, *arguments, weight_dropout=None, **options):
            super().__init__(*arguments, **options)
            self.weight_dropout = weight_dropout

    with pytest.raises(ValueError, match=re.escape(
            "weight_dropout must be a probability in [0, 1), got None (weight_dropout is lstmkit's option of the "
            "layer: if DropConnect means an attribute of its own, give it another name)")):
        DropConnect(INPUT, HIDDEN)


def test_option_errors():
    with pytest.raises(ValueError, match="engine must be one of auto, native, fused, triton, reference, got 'cudnn'"):
        lstmkit.LSTMCell(INPUT, HIDDEN, engine="cudnn")
    with pytest.raises(ValueError, match="engine='native' cannot run this cell: cell 'peephole' has no native kernel"):
        lstmkit.PeepholeLSTMCell(INPUT, HIDDEN, engine="native")
    with pytest.raises(ValueError, match="torch's native cell kernels do not expose gate activations"):
        lstmkit.LSTMCell(INPUT, HIDDEN, engine="native")(torch.randn(B, INPUT), return_gates=True)
    with pytest.raises(ValueError, match="forget_bias needs a cell with a forget gate; cell gru has none"):
        lstmkit.RecurrentCell("gru", INPUT, HIDDEN, forget_bias=1.0)
    with pytest.raises(ValueError, match="nonlinearity must be one of \\['relu', 'tanh'\\], got 'sigmoid'"):
        lstmkit.RNNCell(INPUT, HIDDEN, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size must be greater than zero, got 0"):
        lstmkit.GRUCell(INPUT, 0)
    with pytest.raises(TypeError, match="GRUCell: hx \\(h\\) must be a Tensor, got tuple of 2"):
        lstmkit.GRUCell(INPUT, HIDDEN)(torch.randn(B, INPUT), (torch.randn(B, HIDDEN),) * 2)


def test_a_triton_cell_module_without_triton_is_refused_when_built(monkeypatch):
    monkeypatch.setattr(lstmkit.engines.triton.TritonEngine, "unavailable", lambda self: "triton is not installed")
    with pytest.raises(ValueError, match="^engine='triton' cannot run this cell: triton is not installed; "
                                         "use engine='auto' or 'fused'$"):
        lstmkit.LSTMCell(INPUT, HIDDEN, engine="triton")


@triton_installed
@pytest.mark.parametrize("compiled", [False, True])
def test_a_triton_step_on_cpu_tensors_outside_the_interpreter_is_refused_with_the_device(monkeypatch, compiled):
    """Compiled, the step took the layer's op first and failed in Triton: "0 active drivers"."""
    cell = lstmkit.LSTMCell(INPUT, HIDDEN, engine="triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    torch._dynamo.reset()
    with pytest.raises(ValueError, match=r"^engine='triton' cannot run this step: the Triton kernels run on CUDA "
                                         r"tensors \(on CPU only under TRITON_INTERPRET=1\); got cpu$"):
        (torch.compile(cell, backend="eager") if compiled else cell)(torch.randn(B, INPUT))


@pytest.mark.parametrize("value, on", [("1", True), ("true", True), (" Yes", True), ("ON", True), ("y", True),
                                       ("0", False), ("off", False), ("", False)])
def test_triton_interpret_is_read_as_triton_reads_it(monkeypatch, value, on):
    """TRITON_INTERPRET=true ran Triton's interpreter, and lstmkit refused the CPU call."""
    from lstmkit.engines.triton import interpreting

    monkeypatch.setenv("TRITON_INTERPRET", value)
    assert interpreting() is on


@pytest.mark.parametrize("cell_name, engine", [
    *[(cell_name, engine) for cell_name in ("lstm", "gru") for engine in ("auto", "native", "fused", "reference")],
    ("peephole", "auto"),
    *[pytest.param(cell_name, "triton", marks=triton_installed) for cell_name in ("lstm", "peephole")],
])
def test_a_step_on_the_meta_device_gives_shapes(cell_name, engine, monkeypatch):
    """As the layers do: shape inference, and a model built on meta then to_empty(). The
    Triton interpreter failed copying meta tensors, and outside it the step was refused."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    module = NAMED[cell_name](INPUT, HIDDEN, engine=engine, device="meta")
    h = module(torch.empty(B, INPUT, device="meta"))
    h = h[0] if isinstance(h, tuple) else h
    assert (h.device.type, h.shape) == ("meta", (B, HIDDEN))


@pytest.mark.parametrize("cell_name, options", ALL_CELL_PARAMS)
def test_named_modules_take_the_layer_arguments(cell_name, options):
    """Each named module builds the same cell as RecurrentCell by name, with the same weights."""
    torch.manual_seed(0)
    named = NAMED[cell_name](INPUT, HIDDEN, **options)
    torch.manual_seed(0)
    generic = lstmkit.RecurrentCell(cell_name, INPUT, HIDDEN, **options)
    assert named.cell == generic.cell, cell_id(cell_name, options)
    assert all(torch.equal(a, b) for a, b in zip(named.parameters(), generic.parameters(), strict=True))


def steps_then_update(module: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor) -> torch.Tensor:
    """A decoder-style loop over the steps of `inputs` (T, B, I), then one optimizer step; the
    summed outputs, detached."""
    hx, total = None, 0.0
    for x in inputs:
        hx = module(x, hx)
        total = total + (hx[0] if isinstance(hx, tuple) else hx).pow(2).sum()
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    return total.detach()


COMPILED_CELLS = [("lstm", {}), ("gru", {}), ("rnn", {"nonlinearity": "relu"}), ("peephole", {}), ("cifg", {}),
                  ("layernorm", {}), ("lstm", {"forget_gate": False})]
# aot_eager: every cell on the fused and reference engines, and the plain cells on auto (native);
# inductor (a C++ compile per graph): a native and a fused cell.
COMPILED_RUNS = [
    *[(cell, options, engine, "aot_eager") for cell, options in COMPILED_CELLS for engine in ("fused", "reference")],
    *[(cell, options, "auto", "aot_eager") for cell, options in COMPILED_CELLS[:3]],
    ("lstm", {}, "auto", "inductor"), ("layernorm", {}, "auto", "inductor"),
]


@pytest.mark.parametrize("cell_name, options, engine, backend", [
    pytest.param(*run, id=f"{cell_id(*run[:2])}-{run[2]}-{run[3]}") for run in COMPILED_RUNS])
def test_compiled_steps_equal_eager_over_optimizer_steps(cell_name, options, engine, backend):
    """torch.compile of a cell module in a hand-written loop, its parameters updated between
    calls: the same losses and weights as eager, in float32; each step one graph
    (`fullgraph=True`: the fused step broke at its autograd.Function, and now runs as the
    layer's custom op)."""
    torch.manual_seed(0)
    eager = lstmkit.RecurrentCell(cell_name, INPUT, HIDDEN, engine=engine, **options)
    compiled_module = lstmkit.RecurrentCell(cell_name, INPUT, HIDDEN, engine=engine, **options)
    compiled_module.load_state_dict(eager.state_dict())
    compiled = torch.compile(compiled_module, backend=backend, fullgraph=True)
    inputs = torch.randn(4, B, INPUT, generator=torch.Generator().manual_seed(1))
    optimizers = [torch.optim.Adam(module.parameters(), lr=0.05) for module in (eager, compiled_module)]
    torch._dynamo.reset()
    for _ in range(3):
        expected = steps_then_update(eager, optimizers[0], inputs)
        actual = steps_then_update(compiled, optimizers[1], inputs)
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)
    for name, parameter in eager.named_parameters():
        torch.testing.assert_close(compiled_module.get_parameter(name), parameter, rtol=1e-5, atol=1e-6)


def test_a_compiled_cell_module_is_not_compiled_again_when_another_kind_of_cell_is_first_used():
    """auto's choice was memoised in a global dict, on which torch.compile guarded: each new
    cell, engine or device anywhere compiled every compiled cell module again."""
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    cells = [lstmkit.LSTMCell(3, 4), lstmkit.PeepholeLSTMCell(3, 4), lstmkit.GRUCell(3, 4),
             lstmkit.LayerNormLSTMCell(3, 4, dtype=F64)]
    compiled = [torch.compile(cell, backend=counter) for cell in cells]
    counts = []
    for _ in range(2):
        for cell, step in zip(cells, compiled, strict=True):
            x = torch.randn(2, 3, dtype=cell.weight_ih.dtype)
            assert torch.equal(step(x)[0], cell(x)[0])
        counts.append(counter.frame_count)
    assert counts == [len(cells)] * 2


@pytest.mark.parametrize("cell_name, options", ALL_CELL_PARAMS)
def test_a_fused_step_with_its_gates_compiles_as_one_graph_to_the_eager_numbers(cell_name, options):
    """fullgraph=True stopped at the fused step's autograd.Function ("Attempted to call function
    marked as skipped"); float64, the step, its gates and every gradient."""
    torch.manual_seed(0)
    cell = lstmkit.RecurrentCell(cell_name, INPUT, HIDDEN, dtype=F64, engine="fused", **options)
    x, hx = random_inputs((B,), cell.cell.has_cell_state)
    named = leaves(cell, x, hx)
    torch._dynamo.reset()
    (state, gates), (expected_state, expected_gates) = (
        step(x, hx, return_gates=True) for step in (torch.compile(cell, backend="aot_eager", fullgraph=True), cell))
    assert gates.keys() == expected_gates.keys()
    for name, gate in gates.items():
        assert_close(gate, expected_gates[name], name)
    state, expected_state = (part if isinstance(part, tuple) else (part,) for part in (state, expected_state))
    grads = [torch.autograd.grad(sum(part.sum() for part in run), list(named.values()))
             for run in (state, expected_state)]
    for name, actual, expected in zip(named, *grads):
        assert_close(actual, expected, f"gradient of {name}")
    for actual, expected in zip(state, expected_state, strict=True):
        assert_close(actual, expected, "state")


@pytest.mark.parametrize("cell_name, options", ALL_CELL_PARAMS)
def test_every_cell_module_exports_to_onnx_and_onnxruntime_agrees(cell_name, options, tmp_path):
    """torch.onnx.export of one step from a given state, batch size left free: onnxruntime on
    a batch of 5 gives the eager module's outputs (float32)."""
    onnxruntime = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    cell = lstmkit.RecurrentCell(cell_name, INPUT, HIDDEN, **options).eval()

    def example(batch: int) -> tuple[torch.Tensor, ...]:
        x, hx = random_inputs((batch,), cell.cell.has_cell_state, seed=batch)
        return tuple(part.detach().float() for part in (x, *(hx if isinstance(hx, tuple) else (hx,))))

    class Step(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = cell

        def forward(self, x, *state):
            return self.cell(x, state if len(state) == 2 else state[0])

    arguments = example(2)
    batch = torch.export.Dim("batch")
    shapes = ({0: batch}, tuple({0: batch} for _ in arguments[1:]))
    torch.onnx.export(Step().eval(), arguments, tmp_path / "step.onnx", dynamic_shapes=shapes, verbose=False)
    session = onnxruntime.InferenceSession(str(tmp_path / "step.onnx"))
    arguments = example(5)
    actual = session.run(None, {node.name: tensor.numpy() for node, tensor in zip(session.get_inputs(), arguments,
                                                                                  strict=True)})
    with torch.no_grad():
        expected = Step()(*arguments)
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert len(actual) == len(expected)
    for ours, theirs in zip(actual, expected, strict=True):
        torch.testing.assert_close(torch.from_numpy(ours), theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell_name, options", ALL_CELL_PARAMS)
def test_an_exported_cell_module_runs_with_gradients_and_gives_the_eager_numbers(cell_name, options):
    """torch.export traces one step on the reference engine, as it traces a layer: the fused
    step's in-place products exported, then failed when run with parameters that need
    gradients ("functions with out=... arguments don't support automatic differentiation")."""
    torch.manual_seed(0)
    cell = lstmkit.RecurrentCell(cell_name, INPUT, HIDDEN, **options)
    x = torch.randn(B, INPUT)
    exported = torch.export.export(cell, (x,)).module()
    for ours, theirs in zip(flatten_outputs(exported(x)), flatten_outputs(cell(x)), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("engine", ["auto", "native", "fused", TRITON, "reference"])
@pytest.mark.parametrize("torch_type, lstmkit_type, options", TORCH_CELLS)
@pytest.mark.parametrize("missing", ["bias_ih", "bias_hh"])
def test_a_bias_set_to_none_is_left_out_as_torch_leaves_it(torch_type, lstmkit_type, options, missing, engine):
    """A bias set to None (folded into the other for deployment, say): torch.nn's cells add the
    one left, and so does every engine, forward and backward."""
    reference = torch_type(INPUT, HIDDEN, dtype=F64, **options)
    cell = lstmkit_type(INPUT, HIDDEN, dtype=F64, engine=engine, **options)
    cell.load_state_dict(reference.state_dict())
    setattr(reference, missing, None)
    setattr(cell, missing, None)
    x, hx = random_inputs((B,), torch_type is nn.LSTMCell)
    assert_same_run(cell(x, hx), reference(x, hx), leaves(cell, x, hx), leaves(reference, x, hx))

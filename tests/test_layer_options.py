"""Construction options: forget_bias, dropout, parameters of the variants, repr, cell objects."""

from __future__ import annotations

import math
import re
import warnings

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import lstmkit
from helpers import assert_close, record_engines, triton_installed
from lstmkit.cells import LSTMStep, make_cell
from lstmkit.engines import CPU_FUSED_MIN_STEPS, select_engine
from lstmkit.engines.precision import onednn_takes_even_packed
from lstmkit.engines.step import step_engine_name

H = 4


@pytest.mark.parametrize("cell, block, value", [
    ("lstm", 1, 1.0), ("peephole", 1, 1.0), ("layernorm", 1, 1.0), ("cifg", 0, -1.0),
])
def test_forget_bias_sets_the_forget_rows_of_every_layer_and_direction(cell, block, value):
    torch.manual_seed(3)
    plain = lstmkit.Recurrent(cell, 3, H, num_layers=2, bidirectional=True)
    torch.manual_seed(3)
    biased = lstmkit.Recurrent(cell, 3, H, num_layers=2, bidirectional=True, forget_bias=1.0)
    rows = slice(block * H, (block + 1) * H)
    for suffix in ("_l0", "_l0_reverse", "_l1", "_l1_reverse"):
        bias_ih, bias_hh = getattr(biased, "bias_ih" + suffix), getattr(biased, "bias_hh" + suffix)
        assert torch.all(bias_ih[rows] == value) and torch.all(bias_hh[rows] == 0)
        others = torch.ones_like(bias_ih, dtype=torch.bool)
        others[rows] = False
        assert torch.equal(bias_ih[others], getattr(plain, "bias_ih" + suffix)[others])
        assert torch.equal(bias_hh[others], getattr(plain, "bias_hh" + suffix)[others])


def test_cifg_forget_bias_makes_the_forget_gate_start_at_sigmoid_of_it():
    layer = lstmkit.CIFGLSTM(2, H, forget_bias=2.0)
    with torch.no_grad():
        layer.weight_ih_l0.zero_()
        layer.weight_hh_l0.zero_()
        layer.bias_ih_l0[H:].zero_()
        layer.bias_hh_l0.zero_()
    _, _, trace = layer(torch.randn(3, 1, 2), return_gates=True)
    assert torch.allclose(trace.gates["forget"], torch.sigmoid(torch.tensor(2.0)))


@pytest.mark.parametrize("cell, options, message", [
    ("gru", {}, "forget_bias needs a cell with a forget gate; cell gru has none (got forget_bias=1.0)"),
    ("rnn", {}, "forget_bias needs a cell with a forget gate; cell rnn has none (got forget_bias=1.0)"),
    ("lstm", {"forget_gate": False},
     "forget_bias needs a cell with a forget gate; cell lstm(forget_gate=False) has none (got forget_bias=1.0)"),
])
def test_forget_bias_without_a_forget_gate_is_an_error(cell, options, message):
    with pytest.raises(ValueError) as error:
        lstmkit.Recurrent(cell, 3, H, forget_bias=1.0, **options)
    assert str(error.value) == message


@pytest.mark.parametrize("options", [{"forget_bias": 1.0}, {"init": "chrono", "chrono_max": 50}])
@pytest.mark.parametrize("module", ["layer", "cell module"])
def test_forget_bias_and_chrono_go_into_the_bias_left_where_the_other_is_set_to_none(options, module):
    """A bias set to None counts as zero; reset_parameters failed with a TypeError, the weights
    already re-drawn."""
    if module == "cell module" and "init" in options:
        pytest.skip("cell modules take no init")
    names = ("bias_ih_l0", "bias_hh_l0") if module == "layer" else ("bias_ih", "bias_hh")
    for gone, kept in (names, names[::-1]):
        torch.manual_seed(0)
        layer = lstmkit.LSTM(3, H, **options) if module == "layer" else lstmkit.LSTMCell(3, H, **options)
        setattr(layer, gone, None)
        layer.reset_parameters()
        bias = getattr(layer, kept).detach()
        if "forget_bias" in options:
            assert torch.equal(bias[H:2 * H], torch.ones(H))
        else:
            assert torch.equal(bias[:H], -bias[H:2 * H])
            assert bool(((0 <= bias[H:2 * H]) & (bias[H:2 * H] <= math.log(49))).all())


@pytest.mark.parametrize("options, said", [({"forget_bias": 1.0}, "forget_bias=1.0"),
                                           ({"init": "chrono", "chrono_max": 50}, "init='chrono'")])
def test_a_forget_gate_bias_with_both_biases_set_to_none_is_refused_before_anything_is_reset(options, said):
    layer = lstmkit.LSTM(3, H, num_layers=2, **options)
    layer.bias_ih_l1 = layer.bias_hh_l1 = None
    before = {name: parameter.detach().clone() for name, parameter in layer.named_parameters()}
    with pytest.raises(ValueError, match=re.escape(
            f"reset_parameters sets the forget gate's bias ({said}), but bias_ih_l1 and bias_hh_l1 were both set "
            f"to None: give one of them a tensor, or build the module without {said}")):
        layer.reset_parameters()
    for name, parameter in layer.named_parameters():
        assert torch.equal(parameter, before[name]), name


def test_forget_bias_without_biases_is_an_error():
    with pytest.raises(ValueError, match="forget_bias sets the gate's bias, so it needs bias=True; got bias=False"):
        lstmkit.LSTM(3, H, bias=False, forget_bias=1.0)


@pytest.mark.parametrize("name, switch", [("nig", "input_gate"), ("nfg", "forget_gate"), ("nog", "output_gate"),
                                          ("niaf", "input_activation"), ("noaf", "output_activation")])
def test_an_ablation_by_name_is_the_lstm_with_that_switch_off(name, switch):
    """Greff et al.'s names, for commands that take cell names: the same cell, weights and numbers."""
    assert make_cell(name) == LSTMStep(**{switch: False})
    torch.manual_seed(0)
    named = lstmkit.Recurrent(name, 3, H, num_layers=2).double()
    torch.manual_seed(0)
    switched = lstmkit.Recurrent("lstm", 3, H, num_layers=2, **{switch: False}).double()
    assert {key: value.shape for key, value in named.state_dict().items()} == {
        key: value.shape for key, value in switched.state_dict().items()}
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    assert torch.equal(named(x)[0], switched(x)[0])
    assert repr(named) == repr(switched)
    cell = lstmkit.RecurrentCell(name, 3, H)
    assert cell.cell == LSTMStep(**{switch: False})


def test_dropout_is_off_in_eval_mode():
    torch.manual_seed(0)
    layer = lstmkit.LSTM(3, H, num_layers=3, dropout=0.5).eval()
    reference = lstmkit.LSTM(3, H, num_layers=3)
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(5, 2, 3)
    assert torch.equal(layer(x)[0], reference(x)[0])


def test_dropout_one_zeroes_the_input_of_every_layer_but_the_first_and_not_the_output():
    torch.manual_seed(0)
    layer = lstmkit.GRU(3, H, num_layers=2, dropout=1.0).train()
    output, h_n = layer(torch.randn(5, 2, 3))
    upper = lstmkit.GRU(H, H)
    upper.load_state_dict({name.replace("_l1", "_l0"): value for name, value in layer.state_dict().items() if "_l1" in name})
    expected_output, expected_h = upper(torch.zeros(5, 2, H))
    assert torch.equal(output, expected_output)
    assert torch.equal(h_n[1:], expected_h)
    assert torch.all(output != 0), "no dropout after the last layer"


PACKED_FORMS = {
    # 20 sequences, more than the 16 past which torch.sort is not stable, with tied lengths
    "sorted": lambda x, lengths: pack_padded_sequence(x, sorted(lengths, reverse=True)),
    "unsorted": lambda x, lengths: pack_padded_sequence(x, lengths, enforce_sorted=False),
    "by hand": lambda x, lengths: reordered(pack_padded_sequence(x, lengths, enforce_sorted=False)),
}


def reordered(packed: PackedSequence) -> PackedSequence:
    """`packed` with its tied rows in another order than torch.sort's: a PackedSequence built
    by hand (or by another library), which torch.nn packs in its own order."""
    order = packed.sorted_indices.flip(0)
    lengths = (packed.batch_sizes.unsqueeze(0) > torch.arange(order.shape[0]).unsqueeze(1)).sum(1)
    rank = torch.sort(lengths.index_select(0, packed.unsorted_indices)[order], descending=True, stable=True).indices
    order = order[rank]
    padded, lengths = pad_packed_sequence(packed)
    data = pack_padded_sequence(padded.index_select(1, order), lengths[order]).data
    return PackedSequence(data, packed.batch_sizes, order)


@pytest.mark.parametrize("engine, form", [  # Triton's interpreter takes ~15 s a call: one form
    *[(engine, form) for engine in ("auto", "native", "fused", "reference") for form in [*PACKED_FORMS, "lengths="]],
    pytest.param("triton", "by hand", marks=triton_installed),
])
@pytest.mark.parametrize("torch_type, lstmkit_type, bidirectional", [
    (torch.nn.LSTM, lstmkit.LSTM, False), (torch.nn.GRU, lstmkit.GRU, True), (torch.nn.RNN, lstmkit.RNN, False),
])
def test_packed_input_draws_torch_nn_inter_layer_dropout_masks_on_every_engine(
        torch_type, lstmkit_type, bidirectional, form, engine, monkeypatch):
    """torch.nn draws inter-layer dropout over packed input's values, one row per sequence and
    step in its packing order; every engine draws the same masks, and leaves the random stream
    where torch.nn does. lengths= packs as pack_padded_sequence(enforce_sorted=False). `auto`'s
    call is long enough for it to run the fused engine."""
    torch.manual_seed(0)
    reference = torch_type(3, H, num_layers=3, dropout=0.5, bidirectional=bidirectional, dtype=torch.float64)
    layer = lstmkit_type(3, H, num_layers=3, dropout=0.5, bidirectional=bidirectional, dtype=torch.float64,
                         engine=engine)
    layer.load_state_dict(reference.state_dict())
    steps = CPU_FUSED_MIN_STEPS + 6 if engine == "auto" else 8
    lengths = [steps, *torch.randint(1, 6, (18,)).tolist(), steps - 2]
    x = torch.randn(steps, len(lengths), 3, dtype=torch.float64, requires_grad=True)
    packed = PACKED_FORMS["unsorted" if form == "lengths=" else form](x, lengths)
    engines = record_engines(monkeypatch)
    torch.manual_seed(5)
    expected = reference(packed)[0]
    expected_after = torch.rand(3)
    torch.manual_seed(5)
    if form == "lengths=":
        output = pack_padded_sequence(layer(x, lengths=lengths)[0], lengths, enforce_sorted=False)
    else:
        output = layer(packed)[0]
    assert torch.equal(torch.rand(3), expected_after), "the random stream after the call is torch.nn's"
    assert_close(output.data, expected.data, "output")
    gradient, = torch.autograd.grad(output.data.sum(), x, retain_graph=True)  # the packing is shared
    expected_gradient, = torch.autograd.grad(expected.data.sum(), x)
    assert_close(gradient, expected_gradient, "input gradient")
    assert engines == [{"auto": "fused"}.get(engine, engine)]


@pytest.mark.parametrize("engine", ["fused", "reference", pytest.param("triton", marks=triton_installed)])
def test_a_variant_draws_the_same_inter_layer_masks_on_every_engine(engine):
    """Cells torch.nn lacks: each engine's masks are the native LSTM's, drawn over the packed
    values, so a peephole LSTM with zero peepholes is the plain LSTM, dropout included."""
    torch.manual_seed(0)
    plain = lstmkit.LSTM(3, H, num_layers=2, dropout=0.5, dtype=torch.float64, engine="native")
    peephole = lstmkit.PeepholeLSTM(3, H, num_layers=2, dropout=0.5, dtype=torch.float64, engine=engine)
    with torch.no_grad():
        for name, parameter in peephole.named_parameters():
            parameter.copy_(plain.state_dict()[name] if name in plain.state_dict() else torch.zeros_like(parameter))
    x = torch.randn(7, 20, 3, dtype=torch.float64)
    lengths = [7, 3, *[5] * 17, 2]
    outputs = []
    for layer in (plain, peephole):
        torch.manual_seed(11)
        outputs.append(layer(x, lengths=lengths)[0])
    assert_close(outputs[1], outputs[0], "output")


def test_dropout_warns_at_the_callers_line_for_a_single_layer():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lstmkit.LSTM(3, H, dropout=0.3)
    assert len(caught) == 1
    assert "non-zero dropout expects num_layers greater than 1, but got dropout=0.3 and num_layers=1" in str(
        caught[0].message
    )
    assert caught[0].filename == __file__


@pytest.mark.parametrize("cell, options, names", [
    ("peephole", {}, ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                      "peephole_i_l0", "peephole_f_l0", "peephole_o_l0"]),
    ("layernorm", {}, ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "layernorm_ih_weight_l0",
                       "layernorm_hh_weight_l0", "layernorm_cell_weight_l0", "layernorm_cell_bias_l0"]),
])
def test_variant_parameter_names(cell, options, names):
    assert [name for name, _ in lstmkit.Recurrent(cell, 3, H, **options).named_parameters()] == names


def test_layernorm_without_bias_has_no_shifts_and_starts_with_unit_gains():
    layer = lstmkit.LayerNormLSTM(3, H, bias=False)
    assert [name for name, _ in layer.named_parameters()] == [
        "weight_ih_l0", "weight_hh_l0", "layernorm_ih_weight_l0", "layernorm_hh_weight_l0", "layernorm_cell_weight_l0",
    ]
    assert torch.all(layer.layernorm_ih_weight_l0 == 1) and layer.layernorm_ih_weight_l0.shape == (4 * H,)
    assert torch.all(layer.layernorm_cell_weight_l0 == 1) and layer.layernorm_cell_weight_l0.shape == (H,)


@pytest.mark.parametrize("options, gates", [
    ({}, 4), ({"input_gate": False}, 3), ({"forget_gate": False, "output_gate": False}, 2),
    ({"input_activation": False}, 4),
])
def test_ablations_drop_the_rows_of_removed_gates(options, gates):
    layer = lstmkit.LSTM(3, H, proj_size=2, **options)
    assert layer.weight_ih_l0.shape == (gates * H, 3)
    assert layer.weight_hh_l0.shape == (gates * H, 2)
    assert layer.bias_hh_l0.shape == (gates * H,)


def test_repr_shows_options_and_the_engine_in_use():
    assert repr(lstmkit.LSTM(10, 20, num_layers=2, output_gate=False, forget_bias=1.0)) == (
        "LSTM(10, 20, output_gate=False, num_layers=2, forget_bias=1.0, engine=fused)"
    )
    assert repr(lstmkit.LSTM(10, 20, num_layers=2)) == "LSTM(10, 20, num_layers=2, engine=native)"
    assert repr(lstmkit.Recurrent("rnn", 3, 4, nonlinearity="relu", bidirectional=True, engine="reference")) == (
        "Recurrent('rnn', 3, 4, nonlinearity='relu', bidirectional=True, engine=reference)"
    )


@triton_installed
def test_repr_of_a_triton_layer_built_on_the_cpu(monkeypatch):
    """print(model) before model.cuda(): the engine asked for, which runs on CUDA only."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert repr(lstmkit.GRU(3, 4, engine="triton")) == "GRU(3, 4, engine=triton)"


@pytest.mark.parametrize("cell, options, engine", [
    ("lstm", {}, "native"), ("gru", {}, "fused"), ("rnn", {"nonlinearity": "relu"}, "fused"),
    ("lstm", {"input_activation": False}, "fused"), ("peephole", {}, "fused"), ("cifg", {}, "fused"),
    ("layernorm", {}, "fused"),
])
def test_auto_on_cpu_picks_onednn_for_the_plain_lstm_and_fused_for_the_rest(cell, options, engine):
    """The rule of BENCHMARKS.md: fused measures faster than oneDNN for rnn and gru on CPU over
    long sequences with gradients (the engine `engine_name` names)."""
    assert lstmkit.Recurrent(cell, 3, 4, **options).engine_name == engine


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_auto_on_cpu_runs_onednn_for_rnn_and_gru_on_short_calls_and_calls_without_gradients(cell, monkeypatch):
    """One GRU step (a decoder's) ran 3-6 x slower fused than on oneDNN (BENCHMARKS.md)."""
    chosen = record_engines(monkeypatch)
    layer = lstmkit.Recurrent(cell, 3, 4)
    layer(torch.randn(CPU_FUSED_MIN_STEPS - 1, 2, 3))                     # short, with gradients
    layer(torch.randn(CPU_FUSED_MIN_STEPS, 2, 3))                         # long, with gradients
    with torch.no_grad():
        layer(torch.randn(CPU_FUSED_MIN_STEPS, 2, 3))                     # long, without
    layer.requires_grad_(False)
    layer(torch.randn(CPU_FUSED_MIN_STEPS, 2, 3))                         # nothing to differentiate
    layer.bias_ih_l0.requires_grad_(True)
    layer(torch.randn(CPU_FUSED_MIN_STEPS, 2, 3))                         # a bias's gradient: through all steps
    layer.bias_ih_l0.requires_grad_(False)
    layer(torch.randn(CPU_FUSED_MIN_STEPS, 2, 3), torch.zeros(1, 2, 4, requires_grad=True))  # h0's: so too
    assert chosen == ["native", "fused", "native", "native", "fused", "fused"]
    assert layer.engine_name == "fused"  # the repr's: a long call with gradients


def test_auto_on_cpu_runs_the_plain_lstm_fused_on_long_padded_calls_with_gradients(monkeypatch):
    """torch's CPU LSTM backpropagates packed input in time growing with the square of the
    steps (16.9 s at B 32, H 256, T 400, where fused took 0.71 s): a speech model on
    two-minute recordings took 147 s a step. Without lengths, without gradients or on short
    calls oneDNN stays, and every engine gives torch.nn's numbers."""
    chosen = record_engines(monkeypatch)
    torch.manual_seed(0)
    reference = torch.nn.LSTM(3, 4, dtype=torch.float64)
    layer = lstmkit.LSTM(3, 4, dtype=torch.float64)
    layer.load_state_dict(reference.state_dict())
    steps = CPU_FUSED_MIN_STEPS
    x = torch.randn(steps, 2, 3, dtype=torch.float64)
    lengths = [steps, steps - 9]
    output = layer(x, lengths=lengths)[0]                                  # long, padded, with gradients
    expected = torch.nn.utils.rnn.pad_packed_sequence(
        reference(torch.nn.utils.rnn.pack_padded_sequence(x, lengths))[0], total_length=steps)[0]
    torch.testing.assert_close(output, expected)
    layer(x[:-1], lengths=[steps - 1, steps - 9])                          # short
    layer(x)                                                               # long, not padded
    with torch.no_grad():
        layer(x, lengths=lengths)                                          # long, without gradients
    layer(torch.nn.utils.rnn.pack_padded_sequence(x, lengths))             # a PackedSequence is padded input
    layer(x, lengths=[steps, steps])                                       # equal, but float64: cell steps
    single = lstmkit.LSTM(3, 4)
    single(x.float(), lengths=[steps, steps])                              # equal: torch 2.13 hands it to oneDNN
    lstmkit.LSTM(3, 4, proj_size=2)(x.float(), lengths=[steps, steps])     # never with a projection
    even = "native" if onednn_takes_even_packed() else "fused"
    assert chosen == ["fused", "native", "native", "native", "fused", "fused", even, "fused"]


@triton_installed
@pytest.mark.parametrize("cell, options, engine", [
    ("lstm", {}, "native"), ("gru", {}, "native"), ("rnn", {"nonlinearity": "relu"}, "native"),
    ("lstm", {"input_activation": False}, "triton"), ("peephole", {}, "triton"), ("cifg", {}, "triton"),
    ("layernorm", {}, "triton"),
])
def test_auto_on_cuda_picks_cudnn_for_the_cells_it_runs_and_triton_for_the_rest(cell, options, engine):
    """The rule of BENCHMARKS.md's GPU table (the choice alone: no GPU needed to make it); the
    gates of a plain cell come from Triton too, as cuDNN does not expose them."""
    cuda = torch.device("cuda")
    assert select_engine("auto", make_cell(cell, **options), cuda).name == engine
    assert select_engine("auto", make_cell(cell, **options), cuda, return_gates=True).name == "triton"
    assert step_engine_name("auto", make_cell(cell, **options), False, cuda) == engine
    assert step_engine_name("auto", make_cell(cell, **options), True, cuda) == "triton"


@pytest.mark.parametrize("cell, options, engine", [
    ("lstm", {}, "native"), ("gru", {}, "native"), ("lstm", {"forget_gate": False}, "fused"), ("peephole", {}, "fused"),
    ("cifg", {}, "fused"), ("layernorm", {}, "reference"),
])
def test_auto_steps_a_cell_module_on_the_engine_measured_faster_on_cpu(cell, options, engine):
    """BENCHMARKS.md, "Cell modules": the LayerNorm step measured faster on the reference engine
    at every size, with and without gradients; the gates of a plain cell come from fused."""
    cpu = torch.device("cpu")
    assert step_engine_name("auto", make_cell(cell, **options), False, cpu) == engine
    assert step_engine_name("auto", make_cell(cell, **options), True, cpu) == ("reference" if cell == "layernorm"
                                                                               else "fused")
    module = lstmkit.RecurrentCell(cell, 3, 4, **options)
    assert repr(module).endswith(f"engine={engine})")


def test_a_cell_object_builds_the_same_layer_as_its_name_and_options():
    torch.manual_seed(1)
    by_object = lstmkit.Recurrent(LSTMStep(forget_gate=False), 3, H)
    torch.manual_seed(1)
    by_name = lstmkit.Recurrent("lstm", 3, H, forget_gate=False)
    x = torch.randn(4, 2, 3)
    assert by_object.cell == by_name.cell
    assert torch.equal(by_object(x)[0], by_name(x)[0])


def test_state_dict_round_trip_between_variants_of_the_same_cell():
    source = lstmkit.LayerNormLSTM(3, H, num_layers=2, bidirectional=True, dtype=torch.float64)
    target = lstmkit.LayerNormLSTM(3, H, num_layers=2, bidirectional=True, dtype=torch.float64)
    target.load_state_dict(source.state_dict())
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    assert torch.equal(source(x)[0], target(x)[0])


def test_parameters_take_dtype():
    layer = lstmkit.PeepholeLSTM(3, H, dtype=torch.float64)
    assert {parameter.dtype for parameter in layer.parameters()} == {torch.float64}


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_forget_bias_must_be_finite(value):
    with pytest.raises(ValueError) as error:
        lstmkit.LSTM(3, H, forget_bias=value)
    assert str(error.value) == f"forget_bias must be a finite number, got {value}"

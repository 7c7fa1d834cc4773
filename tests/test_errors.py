"""Bad options and bad input: each error names what was expected and what was received."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import lstmkit


def raises(error: type[Exception], message: str):
    """pytest.raises matching `message` literally."""
    return pytest.raises(error, match=re.escape(message))


# --- construction -------------------------------------------------------------------------

@pytest.mark.parametrize("options, error, message", [
    ({"input_size": 0}, ValueError, "input_size must be greater than zero, got 0"),
    ({"hidden_size": -3}, ValueError, "hidden_size must be greater than zero, got -3"),
    ({"num_layers": 0}, ValueError, "num_layers must be greater than zero, got 0"),
    ({"hidden_size": 4.0}, TypeError, "hidden_size must be an int, got 4.0 (float)"),
    ({"num_layers": True}, TypeError, "num_layers must be an int, got True (bool)"),
    ({"proj_size": 4}, ValueError, "proj_size must be smaller than hidden_size=4, got proj_size=4"),
    ({"proj_size": 9}, ValueError, "proj_size must be smaller than hidden_size=4, got proj_size=9"),
    ({"proj_size": -1}, ValueError, "proj_size must be zero (no projection) or positive, got -1"),
    ({"dropout": 1.5}, ValueError, "dropout must be a number in [0, 1], the probability of zeroing an element, got 1.5"),
    ({"dropout": -0.1}, ValueError, "got -0.1"),
    ({"dropout": True}, ValueError, "dropout must be a number in [0, 1], the probability of zeroing an element, got True"),
    ({"dropout": "0.1"}, ValueError, "got '0.1'"),
    ({"bias": 1}, TypeError, "bias must be a bool, got 1 (int)"),
    ({"batch_first": "yes"}, TypeError, "batch_first must be a bool, got 'yes' (str)"),
    ({"bidirectional": 2}, TypeError, "bidirectional must be a bool (or 0 or 1), got 2 (int)"),
    ({"bidirectional": "yes"}, TypeError, "bidirectional must be a bool (or 0 or 1), got 'yes' (str)"),
    ({"engine": "cudnn"}, ValueError, "engine must be one of auto, native, fused, triton, reference, got 'cudnn'"),
    ({"engine": "native", "forget_gate": False}, ValueError,
     "engine='native' cannot run this layer: cell lstm(forget_gate=False) is an ablation; the native kernels "
     "run the full LSTM only; use engine='auto' or 'fused'"),
])
def test_bad_layer_options(options, error, message):
    arguments = {"input_size": 3, "hidden_size": 4, **options}
    with raises(error, message):
        lstmkit.LSTM(**arguments)


@pytest.mark.parametrize("value", [1, np.bool_(True), 0, np.bool_(False)], ids=["1", "numpy-true", "0", "numpy-false"])
def test_switches_torch_nn_takes_as_they_come_take_0_1_and_numpy_bools(value):
    """torch.nn takes any value for a layer's `bidirectional` and a cell's `bias` (it reads them
    as true or false); lstmkit takes the integers 0 and 1 and numpy bools, as bools."""
    layer = lstmkit.GRU(3, 4, bidirectional=value)
    assert layer.bidirectional is bool(value)
    assert [name for name, _ in layer.named_parameters()] == [
        name for name, _ in torch.nn.GRU(3, 4, bidirectional=bool(value)).named_parameters()]
    cell = lstmkit.LSTMCell(3, 4, bias=value)
    assert cell.bias is bool(value)
    assert [name for name, _ in cell.named_parameters()] == [
        name for name, _ in torch.nn.LSTMCell(3, 4, bias=bool(value)).named_parameters()]
    with raises(TypeError, "bias must be a bool (or 0 or 1), got 2 (int)"):
        lstmkit.GRUCell(3, 4, bias=2)


def test_a_numpy_bool_refused_is_named_with_its_module():
    """np.bool_'s own name is "bool": "must be a bool, got np.False_ (bool)" would name nothing wrong."""
    with raises(TypeError, "batch_first must be a bool, got np.True_ (numpy.bool)"):
        lstmkit.LSTM(3, 4, batch_first=np.bool_(True))
    with raises(TypeError, "return_gates must be a bool, got np.False_ (numpy.bool)"):
        lstmkit.LSTMCell(3, 4)(torch.randn(2, 3), return_gates=np.bool_(False))


@pytest.mark.parametrize("build", [lambda dtype: lstmkit.LSTM(3, 4, dtype=dtype),
                                   lambda dtype: lstmkit.PeepholeLSTMCell(3, 4, dtype=dtype)], ids=["layer", "cell"])
@pytest.mark.parametrize("dtype", [torch.complex64, torch.int64, "torch.float64"])
def test_a_dtype_that_is_not_real_floating_point_is_refused_when_built(build, dtype):
    """torch.nn's layers also run complex numbers; lstmkit's cells compute in real ones. A string
    showed as the dtype it names."""
    shown = "'torch.float64' (str)" if isinstance(dtype, str) else dtype
    with raises(TypeError, f"dtype must be a real floating-point dtype (torch.float32, float64, float16 or bfloat16), "
                           f"got {shown}: lstmkit's cells compute in real numbers"):
        build(dtype)


@pytest.mark.parametrize("engine", ["auto", "fused", "reference", "native"])
def test_a_weight_load_state_dict_left_on_meta_is_named_not_computed_with(engine):
    """A layer built on meta, loaded with strict=False from a dict that lacks a weight: torch.nn
    refuses the call; the engines that fill buffers of their own computed garbage from it."""
    with torch.device("meta"):
        layer = lstmkit.LSTM(3, 4, num_layers=2, engine=engine)
    weights = lstmkit.LSTM(3, 4, num_layers=2).state_dict()
    del weights["weight_hh_l1"]
    layer.load_state_dict(weights, strict=False, assign=True)
    with raises(ValueError, "every weight must hold values, or none (a layer on meta), got weight_hh_l1 on meta and "
                            "weight_ih_l0 on cpu: load_state_dict(..., strict=False, assign=True) leaves"):
        layer(torch.randn(5, 2, 3))
    layer = lstmkit.LSTM(3, 4, num_layers=2, engine=engine)
    layer.weight_ih_l0 = torch.nn.Parameter(torch.empty(16, 3, device="meta"))
    with raises(ValueError, "got weight_ih_l0 on meta and weight_hh_l0 on cpu"):  # the one left out named
        layer(torch.randn(5, 2, 3))


@pytest.mark.parametrize("engine", ["auto", "fused", "reference"])
@pytest.mark.parametrize("cell", ["GRUCell", "LayerNormLSTMCell", "PeepholeLSTMCell"])
def test_a_cell_module_weight_left_on_meta_or_of_another_dtype_is_named_not_computed_with(cell, engine):
    """As the layers: a cell module with a weight left on meta computed with uninitialised memory
    (other numbers at every call), one with an extra left there failed inside torch, and a
    float64 bias ran on some engines and failed in torch's product on others."""
    weights = getattr(lstmkit, cell)(3, 5).state_dict()
    del weights["bias_hh"]
    with torch.device("meta"):
        module = getattr(lstmkit, cell)(3, 5, engine=engine)
    module.load_state_dict(weights, strict=False, assign=True)
    with raises(ValueError, "every weight must hold values, or none (a cell module on meta), got bias_hh on meta "
                            "and weight_ih on cpu: load_state_dict(..., strict=False, assign=True) leaves"):
        module(torch.randn(2, 3))
    module = getattr(lstmkit, cell)(3, 5, engine=engine)
    module.bias_hh = torch.nn.Parameter(module.bias_hh.double())
    with raises(ValueError, "every weight matrix and bias must be in weight_ih's dtype (torch.float32), got bias_hh "
                            "in torch.float64; convert the cell module with module.to(torch.float32)"):
        module(torch.randn(2, 3))


def test_from_layer_names_a_weight_of_the_layer_left_on_meta():
    with torch.device("meta"):
        layer = lstmkit.LSTM(3, 4, num_layers=2)
    weights = lstmkit.LSTM(3, 4, num_layers=2).state_dict()
    del weights["weight_hh_l1"]
    layer.load_state_dict(weights, strict=False, assign=True)
    with raises(ValueError, "every weight must hold values, or none (a layer on meta), got weight_hh_l1 on meta and "
                            "weight_ih_l1 on cpu"):
        lstmkit.LSTMCell.from_layer(layer, 1)
    assert torch.equal(lstmkit.LSTMCell.from_layer(layer, 0).weight_hh, weights["weight_hh_l0"])


def test_a_weight_matrix_of_another_dtype_is_refused_on_every_engine_as_torch_nn_refuses_it():
    layer = lstmkit.PeepholeLSTM(3, 4, bidirectional=True)
    layer.bias_hh_l0_reverse = torch.nn.Parameter(layer.bias_hh_l0_reverse.double())
    with raises(ValueError, "every weight matrix and bias must be in weight_ih_l0's dtype (torch.float32), got "
                            "bias_hh_l0_reverse in torch.float64; convert the layer with layer.to(torch.float32)"):
        layer(torch.randn(5, 2, 3))


@pytest.mark.parametrize("engine", ["fused", "reference"])
def test_a_half_layer_may_keep_its_layer_norm_gains_in_float32(engine):
    """A common habit: norm parameters in float32. The engines compute them in float32 anyway."""
    layer = lstmkit.LayerNormLSTM(3, 4, engine=engine).to(torch.bfloat16)
    kept = copy.deepcopy(layer)
    for name in ("layernorm_ih_weight_l0", "layernorm_hh_weight_l0"):
        setattr(kept, name, torch.nn.Parameter(getattr(layer, name).float()))
    x = torch.randn(5, 2, 3, dtype=torch.bfloat16)
    assert torch.equal(kept(x)[0], layer(x)[0])


@pytest.mark.parametrize("engine", ["auto", "fused", "reference"])
@pytest.mark.parametrize("make, name, shape", [
    (lambda engine: lstmkit.LSTM(3, 5, engine=engine), "weight_hh_l0", (20, 5)),
    (lambda engine: lstmkit.GRU(3, 5, bidirectional=True, engine=engine), "weight_ih_l0_reverse", (15, 3)),
    (lambda engine: lstmkit.PeepholeLSTM(3, 5, engine=engine), "peephole_f_l0", (5,)),
    (lambda engine: lstmkit.LayerNormLSTMCell(3, 5, engine=engine), "layernorm_ih_weight", (20,)),
])
def test_a_weight_but_a_bias_set_to_none_is_named_on_every_engine(make, name, shape, engine):
    """Each engine failed deep inside, each its own way (a KeyError, 'NoneType' has no 'shape')."""
    module = make(engine)
    setattr(module, name, None)
    with raises(ValueError, f"{name} is None, but only a bias may be set to None (it counts as zero): give {name} a "
                            f"tensor of shape {shape}"):
        module(torch.randn(4, 2, 3) if hasattr(module, "num_layers") else torch.randn(2, 3))


@pytest.mark.parametrize("engine", ["fused", "reference"])
def test_a_cell_module_computes_layer_norm_gains_of_another_dtype_in_its_own(engine):
    """The fused engine's step failed inside torch ("mixed dtype (CPU)") on a float64 gain in a
    float32 cell module; the layers and the reference engine computed it in float32."""
    torch.manual_seed(0)
    module = lstmkit.LayerNormLSTMCell(3, 4, engine=engine)
    kept = copy.deepcopy(module)
    kept.layernorm_cell_weight = torch.nn.Parameter(module.layernorm_cell_weight.detach().double())
    x = torch.randn(2, 3)
    h, _ = kept(x)
    assert torch.equal(h, module(x)[0]) and h.dtype == torch.float32
    h.sum().backward()
    module(x)[0].sum().backward()
    assert kept.layernorm_cell_weight.grad.dtype == torch.float64
    assert torch.equal(kept.layernorm_cell_weight.grad.float(), module.layernorm_cell_weight.grad)


@pytest.mark.filterwarnings("ignore:Complex modules are a new feature")
@pytest.mark.parametrize("module, input, name", [(lstmkit.GRU(3, 4), torch.randn(5, 2, 3), "layer"),
                                                 (lstmkit.LSTMCell(3, 4), torch.randn(2, 3), "cell")])
def test_a_module_moved_to_complex_numbers_says_so_at_its_call(module, input, name):
    module = module.to(torch.complex64)
    with raises(ValueError, f"lstmkit's {name}s compute in real floating point, but this {name}'s parameters are "
                            f"torch.complex64; convert it with {name}.to(torch.float32)"):
        module(input.to(torch.complex64))


def test_sizes_may_be_numpy_integers_as_torch_nn_cells_take_them(tmp_path):
    """`GRUCell(4, np.prod(observation_shape))`, common in reinforcement learning, was refused;
    the sizes are kept as ints, so the module saves and loads under weights_only."""
    cell, layer = lstmkit.GRUCell(np.int64(3), np.int32(4)), lstmkit.LSTM(np.int64(3), np.int64(4), np.int8(2))
    assert (type(cell.input_size), type(cell.hidden_size), type(layer.num_layers)) == (int, int, int)
    assert {name: p.shape for name, p in cell.named_parameters()} == {
        name: p.shape for name, p in torch.nn.GRUCell(3, 4).named_parameters()}
    assert {name: p.shape for name, p in layer.named_parameters()} == {
        name: p.shape for name, p in torch.nn.LSTM(3, 4, 2).named_parameters()}
    torch.save(cell, tmp_path / "cell.pt")
    assert torch.load(tmp_path / "cell.pt").hidden_size == 4
    projected = lstmkit.LSTM(3, 4, proj_size=np.int64(2))  # as torch.nn.LSTM takes it
    assert type(projected.proj_size) is int and projected.weight_hr_l0.shape == (2, 4)
    stacked = lstmkit.LSTM(3, 4, num_layers=2)
    assert torch.equal(lstmkit.LSTMCell.from_layer(stacked, np.int64(1)).weight_ih, stacked.weight_ih_l1)
    with raises(TypeError, "hidden_size must be an int, got np.True_ (numpy.bool)"):
        lstmkit.LSTMCell(3, np.bool_(True))


def test_unknown_cell_name():
    with raises(ValueError, "unknown cell 'lsmt'; expected one of rnn, lstm, gru, peephole, cifg, layernorm, nig, "
                            "nfg, nog, niaf, noaf"):
        lstmkit.Recurrent("lsmt", 3, 4)


def test_an_ablation_named_with_its_own_switch_is_refused():
    with raises(TypeError, "cell 'nfg' is lstm with forget_gate=False already; give forget_gate to cell 'lstm' "
                           "instead"):
        lstmkit.Recurrent("nfg", 3, 4, forget_gate=True)
    with raises(TypeError, "cell 'nig' got unknown option(s) 'input_gat' (did you mean 'output_gate'?)"):
        lstmkit.Recurrent("nig", 3, 4, input_gat=False)
    from lstmkit.training.device import check_runtime

    with raises(ValueError, "engine 'native' cannot run cell 'noaf' on cpu: cell lstm(output_activation=False) is an "
                            "ablation; the native kernels run the full LSTM only"):
        check_runtime("cpu", "32", "native", "noaf")  # `--cell noaf --engine native`: the cell as the user named it


def test_unknown_cell_option():
    with raises(TypeError, "cell 'lstm' got unknown option(s) 'peepholes'; it accepts input_gate, forget_gate, "
                           "output_gate, input_activation, output_activation"):
        lstmkit.Recurrent("lstm", 3, 4, peepholes=True)
    with raises(TypeError, "cell 'gru' got unknown option(s) 'nonlinearity' (an option of cell 'rnn'); it accepts no "
                           "options"):
        lstmkit.Recurrent("gru", 3, 4, nonlinearity="relu")
    # 'forget_gate' is not taken for a misspelt 'forget_bias', which is another thing
    with raises(TypeError, "cell 'peephole' got unknown option(s) 'forget_gate' (an option of cell 'lstm'), 'hiden' "
                           "(did you mean 'hidden_size'?); it accepts no options"):
        lstmkit.Recurrent("peephole", 3, 4, forget_gate=False, hiden=4)
    with raises(TypeError, "cell 'gru' got unknown option(s) 'forget_gates' (did you mean 'forget_gate', an option of "
                           "cell 'lstm'?); it accepts no options"):
        lstmkit.Recurrent("gru", 3, 4, forget_gates=False)


@pytest.mark.parametrize("build, message", [
    (lambda: lstmkit.Recurrent("lstm", 3, 4, forget_gat=False),
     "cell 'lstm' got unknown option(s) 'forget_gat' (did you mean 'forget_gate'?); it accepts input_gate, "
     "forget_gate, output_gate, input_activation, output_activation"),
    (lambda: lstmkit.Recurrent("gru", 3, 4, num_layer=2),
     "cell 'gru' got unknown option(s) 'num_layer' (did you mean 'num_layers'?); it accepts no options"),
    (lambda: lstmkit.RecurrentCell("peephole", 3, 4, forget_bais=1.0),
     "cell 'peephole' got unknown option(s) 'forget_bais' (did you mean 'forget_bias'?); it accepts no options"),
    (lambda: lstmkit.RecurrentCell("peephole", 3, 4, zoneout=0.1),
     "unexpected keyword argument(s) 'zoneout'; a cell module takes no regulariser options; the layers take them"),
    (lambda: lstmkit.LSTM(3, 4, forget_gat=False),
     "unexpected keyword argument(s) 'forget_gat' (did you mean 'forget_gate'?); lstmkit.LSTM's options beyond "
     "torch.nn's are forget_bias, engine, input_gate, forget_gate, output_gate, input_activation, output_activation, "
     "and the regulariser options recurrent_dropout, input_dropout, zoneout, weight_dropout, init, chrono_max"),
    (lambda: lstmkit.GRU(3, 4, bidirectinal=True),
     "unexpected keyword argument(s) 'bidirectinal' (did you mean 'bidirectional'?); lstmkit.GRU's options beyond "
     "torch.nn's are engine, and the regulariser options recurrent_dropout, input_dropout, zoneout, weight_dropout, "
     "init, chrono_max"),
    (lambda: lstmkit.GRU(3, 4, input_gates=False),  # was "did you mean 'input_size'?"
     "unexpected keyword argument(s) 'input_gates' (did you mean 'input_gate', one of lstmkit.LSTM's switches for the "
     "ablations?); lstmkit.GRU's options beyond torch.nn's are engine, and the regulariser options recurrent_dropout, "
     "input_dropout, zoneout, weight_dropout, init, chrono_max"),
    (lambda: lstmkit.GRUCell(3, 4, dtyp=torch.float64),
     "unexpected keyword argument(s) 'dtyp' (did you mean 'dtype'?); lstmkit.GRUCell's options beyond torch.nn's "
     "are engine"),
    (lambda: lstmkit.CIFGLSTMCell(3, 4, colour=1),
     "unexpected keyword argument(s) 'colour'; lstmkit.CIFGLSTMCell's options beyond torch.nn's are forget_bias, "
     "engine"),
])
def test_a_misspelt_keyword_is_named_with_the_one_likely_meant_and_what_the_module_takes(build, message):
    """LSTM(forget_gat=False) was told only of the regulariser options, Recurrent(num_layer=2) of
    the cell's, RecurrentCell(zoneout=...) that the cell "accepts no options"."""
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        build()


def test_a_misspelt_keyword_of_a_users_subclass_is_named_as_the_lstmkit_class_takes_it():
    """The subclass's own signature (*args, **kwargs) gave "lstmkit.MyLSTM's options beyond torch.nn's are ,"."""
    class MyLSTM(lstmkit.LSTM):
        def __init__(self, *arguments, **options):
            super().__init__(*arguments, **options)

    with pytest.raises(TypeError, match=re.escape(
            "unexpected keyword argument(s) 'forget_gat' (did you mean 'forget_gate'?); lstmkit.LSTM's options beyond "
            "torch.nn's are forget_bias, engine, input_gate,")):
        MyLSTM(3, 4, forget_gat=False)

    class Scaled(lstmkit.LSTM):
        def __init__(self, input_size, hidden_size, *, depth_scale=1.0, **options):
            super().__init__(input_size, hidden_size, **options)

    with pytest.raises(TypeError, match=re.escape("unexpected keyword argument(s) 'depth_scal' (did you mean "
                                                  "'depth_scale'?); lstmkit.LSTM's options")):
        Scaled(3, 4, depth_scal=2.0)


def test_bad_cell_option_values():
    with raises(ValueError, "cell 'rnn' option nonlinearity must be one of ['relu', 'tanh'], got 'sigmoid'"):
        lstmkit.RNN(3, 4, nonlinearity="sigmoid")
    with raises(TypeError, "cell 'lstm' option input_gate must be a bool, got 'no' (str)"):
        lstmkit.LSTM(3, 4, input_gate="no")


def test_layernorm_needs_two_hidden_features():
    with raises(ValueError, "cell 'layernorm' needs hidden_size >= 2: LN(c') over a single feature always "
                            "equals its shift, so the cell state would never reach h; got hidden_size=1"):
        lstmkit.LayerNormLSTM(3, 1)


@pytest.mark.parametrize("make", [lambda: lstmkit.Recurrent("gru", 3, 4, proj_size=2),
                                  lambda: lstmkit.GRU(3, 4, proj_size=2)])
def test_projection_is_for_the_lstm_family_only(make):
    with raises(ValueError, "proj_size applies to the LSTM family only, not to cell 'gru'; got proj_size=2"):
        make()
    with raises(ValueError, "proj_size applies to the LSTM family only, not to cell 'rnn'; got proj_size=1"):
        lstmkit.RNN(3, 4, proj_size=1)


@pytest.mark.parametrize("name, arguments", [
    ("GRU", (3, 4, 2, True, True, 0.0, True, 0, "cpu", torch.float64)),
    ("RNN", (3, 4, 2, "relu", True, True, 0.0, True, 0, "cpu", torch.float64)),
])
def test_gru_and_rnn_take_torch_nn_positional_arguments(name, arguments):
    """torch.nn's GRU and RNN hand their positional arguments to RNNBase, whose slot after
    bidirectional is proj_size (0), then device and dtype: the same call means the same here,
    and a nonzero proj_size in that slot is refused, where torch.nn builds a layer that fails."""
    ours, theirs = getattr(lstmkit, name)(*arguments), getattr(torch.nn, name)(*arguments)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    assert (ours.num_layers, ours.batch_first, ours.bidirectional, ours.proj_size) == (2, True, True, 0)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-12, atol=1e-12)
    with raises(ValueError, f"proj_size applies to the LSTM family only, not to cell '{name.lower()}'; got proj_size=2"):
        getattr(lstmkit, name)(*arguments[:-3], 2)


def test_cell_options_with_a_cell_object():
    with raises(TypeError, "cell options ['forget_gate'] go with a cell name; got a Cell instance (lstm) as well"):
        lstmkit.Recurrent(lstmkit.cells.LSTMStep(), 3, 4, forget_gate=False)


# --- forward -------------------------------------------------------------------------------

@pytest.fixture
def lstm():
    return lstmkit.LSTM(3, 4, num_layers=2)


def test_wrong_feature_size(lstm):
    with raises(ValueError, "input.size(-1) must equal input_size=3, got 5 (input shape (6, 2, 5))"):
        lstm(torch.randn(6, 2, 5))


BAD_CALLS = [
    ("LSTM", lambda m: m(torch.randn(6, 2, 5))),
    ("LSTM", lambda m: m(torch.randn(6, 2, 3), (torch.zeros(1, 3, 4), torch.zeros(1, 3, 4)))),
    ("LSTM", lambda m: m(torch.randn(6, 3), (torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)))),
    ("GRU", lambda m: m(pack_padded_sequence(torch.randn(6, 2, 3), [6, 4]), torch.zeros(1, 3, 4))),
    ("LSTMCell", lambda m: m(torch.randn(2, 5))),
    ("LSTMCell", lambda m: m(torch.randn(2, 3), (torch.zeros(2, 6), torch.zeros(2, 4)))),
    ("GRUCell", lambda m: m(torch.randn(2, 3), torch.zeros(3, 4))),
]


@pytest.mark.parametrize("module_name, call", BAD_CALLS)
def test_a_wrong_size_is_a_runtime_error_as_in_torch_nn_and_a_value_error(module_name, call):
    """torch.nn raises RuntimeError for a wrong input size or state shape; lstmkit's message
    names expected and received, and `except RuntimeError` written for torch.nn still catches it."""
    with pytest.raises(RuntimeError):
        call(getattr(torch.nn, module_name)(3, 4))
    with pytest.raises(RuntimeError) as caught:
        call(getattr(lstmkit, module_name)(3, 4))
    assert isinstance(caught.value, lstmkit.ShapeError) and isinstance(caught.value, ValueError)
    assert "got" in str(caught.value)


@pytest.mark.parametrize("engine", ["auto", "native", "fused", "reference"])
@pytest.mark.parametrize("steps", [5, 40])  # from 32 steps MKL's packed product read the weight unchecked
def test_a_weight_set_anew_in_another_shape_is_named_on_every_engine(engine, steps):
    """`layer.weight_hh_l1 = nn.Parameter(...)` of the wrong shape: at 40 steps the fused
    engine returned numbers, and the native one (as torch.nn.LSTM on oneDNN) does; a weight
    swapped in by torch.func.functional_call alike."""
    layer = lstmkit.LSTM(3, 5, num_layers=2, engine=engine)
    message = ("weight_hh_l1 has shape (20, 6), but the module's sizes (input_size=3, hidden_size=5, num_layers=2) "
               "make it (20, 5): give it a tensor of that shape, or build a module of the sizes wanted")
    with raises(lstmkit.ShapeError, message):
        torch.func.functional_call(layer, {"weight_hh_l1": torch.randn(20, 6)}, (torch.randn(steps, 2, 3),))
    layer.weight_hh_l1 = nn.Parameter(torch.randn(20, 6))
    with raises(lstmkit.ShapeError, message):
        layer(torch.randn(steps, 2, 3))


@pytest.mark.parametrize("make, name, shape, message", [
    (lambda: lstmkit.LSTMCell(3, 5), "weight_hh", (20, 6),
     "weight_hh has shape (20, 6), but the module's sizes (input_size=3, hidden_size=5) make it (20, 5)"),
    (lambda: lstmkit.PeepholeLSTMCell(3, 5, engine="fused"), "peephole_f", (6,),
     "peephole_f has shape (6,), but the module's sizes (input_size=3, hidden_size=5) make it (5,)"),
    (lambda: lstmkit.GRU(3, 5, bidirectional=True, bias=False), "weight_ih_l0_reverse", (15, 4),
     "weight_ih_l0_reverse has shape (15, 4), but the module's sizes (input_size=3, hidden_size=5, "
     "bidirectional=True, bias=False) make it (15, 3)"),
])
def test_a_cell_modules_or_variants_weight_in_another_shape_is_named(make, name, shape, message):
    module = make()
    setattr(module, name, nn.Parameter(torch.randn(shape)))
    with raises(lstmkit.ShapeError, message):
        module(torch.randn(4, 2, 3) if isinstance(module, lstmkit.Recurrent) else torch.randn(2, 3))


@pytest.mark.parametrize("engine", ["auto", "fused"])
def test_surgery_that_changes_a_size_with_its_weights_runs_as_torch_nn(engine):
    """A new input size set with a weight of that size (a layer fitted to new features), as
    torch.nn takes it: the shapes are checked against the sizes the module has now."""
    torch.manual_seed(0)
    layer, cell = lstmkit.LSTM(3, 4, engine=engine), lstmkit.LSTMCell(3, 4)
    twin, twin_cell = torch.nn.LSTM(3, 4), torch.nn.LSTMCell(3, 4)
    twin.load_state_dict(layer.state_dict())
    twin_cell.load_state_dict(cell.state_dict())
    weight = torch.randn(16, 10)
    for module in (layer, twin, cell, twin_cell):
        module.input_size = 10
        setattr(module, "weight_ih_l0" if hasattr(module, "weight_ih_l0") else "weight_ih", nn.Parameter(weight))
    x = torch.randn(5, 2, 10)
    torch.testing.assert_close(layer(x)[0], twin(x)[0])
    torch.testing.assert_close(cell(x[0])[0], twin_cell(x[0])[0])


def test_wrong_number_of_dimensions(lstm):
    with raises(ValueError, "input must be 3-D (batched: (T, B, I), or (B, T, I) with batch_first) or 2-D "
                            "(unbatched: (T, I)), got 4-D with shape (6, 2, 1, 3)"):
        lstm(torch.randn(6, 2, 1, 3))


def test_input_of_the_wrong_type(lstm):
    with raises(TypeError, "input must be a Tensor or a PackedSequence, got list"):
        lstm([[1.0, 2.0, 3.0]])


def test_empty_sequence(lstm):
    with raises(ValueError, "input must have at least one time step, got shape (0, 2, 3)"):
        lstm(torch.randn(0, 2, 3))


def test_input_dtype_mismatch(lstm):
    with raises(ValueError, "input dtype must match the layer's parameters (torch.float32), got torch.float64"):
        lstm(torch.randn(6, 2, 3, dtype=torch.float64))
    with raises(ValueError, "input dtype must be a floating-point type, the layer's (torch.float32), got torch.int64; "
                            "convert the input with input.to(torch.float32)"):
        lstm(torch.ones(6, 2, 3, dtype=torch.long))
    with raises(ValueError, "got torch.int64; convert the input with input.to(torch.float32)"):
        lstmkit.LSTMCell(3, 4)(torch.ones(2, 3, dtype=torch.long))
    quantized = torch.quantize_per_tensor(torch.randn(6, 2, 3), 0.1, 0, torch.quint8)  # a QuantStub's output
    with raises(ValueError, "got torch.quint8; convert the input with input.dequantize()"):
        lstm(quantized)


@pytest.mark.parametrize("module", [lstmkit.LSTM(3, 4), lstmkit.LSTMCell(3, 4)])
def test_return_gates_must_be_a_bool_in_every_engine(module):
    with raises(TypeError, "return_gates must be a bool, got 'no' (str)"):
        module(torch.randn(2, 3), return_gates="no")


@pytest.mark.parametrize("layer, options, message", [
    (lstmkit.GRU, {"forget_bias": 1.0}, "forget_bias sets the forget gate's bias in the LSTM family; cell 'gru' has no "
                                        "forget gate (got forget_bias=1.0)"),
    (lstmkit.RNN, {"forget_bias": 1.0}, "cell 'rnn' has no forget gate (got forget_bias=1.0)"),
    (lstmkit.GRU, {"forget_gate": False}, "forget_gate: lstmkit.LSTM's switches for Greff et al.'s ablations; cell "
                                          "'gru' has none (got forget_gate=False)"),
    (lstmkit.PeepholeLSTM, {"input_gate": False, "output_activation": False},
     "input_gate, output_activation: lstmkit.LSTM's switches for Greff et al.'s ablations; cell 'peephole' has none "
     "(got input_gate=False, output_activation=False)"),
    (lstmkit.GRUCell, {"forget_bias": 1.0}, "forget_bias sets the forget gate's bias in the LSTM family; cell 'gru' "
                                            "has no forget gate (got forget_bias=1.0)"),
    (lstmkit.RNNCell, {"forget_bias": 1.0}, "cell 'rnn' has no forget gate (got forget_bias=1.0)"),
    (lstmkit.CIFGLSTMCell, {"forget_gate": False}, "forget_gate: lstmkit.LSTMCell's switches for Greff et al.'s "
                                                   "ablations; cell 'cifg' has none (got forget_gate=False)"),
    (lstmkit.PeepholeLSTMCell, {"output_gate": False}, "output_gate: lstmkit.LSTMCell's switches"),
    (lstmkit.LSTMCell, {"zoneout": 0.1}, "unexpected keyword argument(s) 'zoneout'; a cell module takes no "
                                         "regulariser options; the layers take them"),
    (lstmkit.LayerNormLSTMCell, {"dropout": 0.1}, "unexpected keyword argument(s) 'dropout'"),
])
def test_an_lstm_gate_option_on_a_layer_without_those_gates_says_so(layer, options, message):
    with raises(TypeError, message):
        layer(3, 4, **options)


def test_state_of_the_wrong_type(lstm):
    with raises(TypeError, "hx must be a tuple (h_0, c_0) of two tensors for this cell, got Tensor of shape (2, 2, 4)"):
        lstm(torch.randn(6, 2, 3), torch.zeros(2, 2, 4))
    gru = lstmkit.GRU(3, 4)
    with raises(TypeError, "hx (h_0) must be a Tensor, got tuple of 2: (Tensor of shape (1, 2, 4), Tensor of shape (1, 2, 4))"):
        gru(torch.randn(6, 2, 3), (torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_a_state_of_the_wrong_type_under_jit_trace_names_its_shape_in_ints(lstm):
    """Traced, a tensor's sizes are 0-d tensors: the message said "of shape (tensor(2), ...)"."""
    with raises(TypeError, "got Tensor of shape (2, 2, 4)"):
        torch.jit.trace(lambda x, h: lstm(x, h)[0], (torch.randn(6, 2, 3), torch.zeros(2, 2, 4)))


def test_state_of_the_wrong_shape(lstm):
    with raises(ValueError, "hx[0] (h_0) must have shape (2, 2, 4) (num_layers * num_directions, batch, features), "
                            "got (1, 2, 4)"):
        lstm(torch.randn(6, 2, 3), (torch.zeros(1, 2, 4), torch.zeros(2, 2, 4)))
    with raises(ValueError, "hx[1] (c_0) must have shape (2, 2, 4)"):
        lstm(torch.randn(6, 2, 3), (torch.zeros(2, 2, 4), torch.zeros(2, 3, 4)))
    with raises(ValueError, "hx[0] (h_0) must have shape (2, 4) (num_layers * num_directions, features) "
                            "for unbatched input, got (2, 1, 4)"):
        lstm(torch.randn(6, 3), (torch.zeros(2, 1, 4), torch.zeros(2, 1, 4)))


def test_state_with_projection_has_proj_size_features():
    layer = lstmkit.LSTM(3, 4, proj_size=2)
    with raises(ValueError, "hx[0] (h_0) must have shape (1, 2, 2) (num_layers * num_directions, batch, features), "
                            "got (1, 2, 4)"):
        layer(torch.randn(6, 2, 3), (torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)))


def test_state_dtype_mismatch(lstm):
    with raises(ValueError, "hx[1] (c_0) dtype must match the layer's parameters (torch.float32), got torch.float64"):
        lstm(torch.randn(6, 2, 3), (torch.zeros(2, 2, 4), torch.zeros(2, 2, 4, dtype=torch.float64)))


@pytest.mark.parametrize("module", [lstmkit.LSTM(3, 4), lstmkit.PeepholeLSTMCell(3, 4)], ids=["layer", "cell"])
def test_input_and_state_on_another_device_are_named(module):
    """The meta device stands in for a GPU: the input must be on the parameters' device, the
    state on the input's, as torch.nn requires (the fused engine would copy a state over)."""
    layer = isinstance(module, lstmkit.Recurrent)
    shape, state_shape = ((6, 2, 3), (1, 2, 4)) if layer else ((2, 3), (2, 4))
    h_name = "hx[0] (h_0)" if layer else "PeepholeLSTMCell: hx[0] (h)"
    with raises(ValueError, "input must be on the parameters' device (cpu), got a tensor on meta; move it with "
                            "input.to('cpu') or the module with module.to('meta')"):
        module(torch.randn(*shape, device="meta"))
    with raises(ValueError, f"{h_name} must be on the input's device (cpu), got a tensor on meta"):
        module(torch.randn(*shape), (torch.zeros(*state_shape, device="meta"), torch.zeros(*state_shape)))


@pytest.mark.parametrize("lengths, error, message", [
    ([6, 7], ValueError, "lengths must be in [1, 6] (the input has 6 time steps), got lengths[1] = 7"),
    ([0, 3], ValueError, "lengths must be in [1, 6] (the input has 6 time steps), got lengths[0] = 0; remove an "
                         "empty sequence from the batch (in a stream of chunks, one that ended in an earlier chunk "
                         "leaves it, its state kept aside)"),
    ([6, 2, 3], ValueError, "lengths must have one entry per sequence, shape (2,), got shape (3,)"),
    (torch.tensor([6.0, 2.0]), TypeError, "lengths must hold integers, got dtype torch.float32"),
    ([6, 2.5], TypeError, "lengths must hold integers, got [6, 2.5]"),
    (6, TypeError, "lengths must hold one integer per sequence (a tensor, a numpy array or a list), got 6"),
    ("62", TypeError, "lengths must hold one integer per sequence (a tensor, a numpy array or a list), got '62'"),
    # torch's own "Tensor.item() cannot be called on meta tensors" came from deep inside
    (torch.tensor([6, 2], device="meta"), ValueError, "lengths on the meta device hold no values, and a batch's "
                                                      "steps depend on them; give them as a list or a CPU tensor"),
])
def test_bad_lengths(lstm, lengths, error, message):
    with raises(error, message):
        lstm(torch.randn(6, 2, 3), lengths=lengths)


@pytest.mark.parametrize("batch_sizes, data_rows, message", [
    ([2, 2, 2, 1], 8, "got [2, 2, 2, 1] (sum 7)"),     # torch.nn dropped the 8th row, silently
    ([2, 3, 2, 1], 8, "got [2, 3, 2, 1] (sum 8)"),     # torch.nn: "The size of tensor a (2) must match ..."
    ([2, 2, 2, 2, 2], 8, "got [2, 2, 2, 2, 2] (sum 10)"),  # torch.nn: "shape '[5, 2, 3]' is invalid ..."
    ([2, 2, 2, 2, 0], 8, "got [2, 2, 2, 2, 0] (sum 8)"),
])
def test_a_hand_built_packed_sequence_with_bad_batch_sizes_is_refused(lstm, batch_sizes, data_rows, message):
    with raises(ValueError, "a PackedSequence's batch_sizes must be positive, non-increasing and sum to its data's "
                            f"rows ({data_rows}), {message}"):
        lstm(PackedSequence(torch.randn(data_rows, 3), torch.tensor(batch_sizes)))


@pytest.mark.parametrize("batch_sizes, shown", [
    (torch.tensor([2, 1], dtype=torch.int32), "a 1-D torch.int32 tensor on cpu"),  # torch: "'lengths' argument ..."
    (torch.tensor([2.0, 1.0]), "a 1-D torch.float32 tensor on cpu"),
    (torch.tensor([[2, 1]]), "a 2-D torch.int64 tensor on cpu"),
])
def test_a_hand_built_packed_sequence_with_batch_sizes_of_another_kind_is_refused(lstm, batch_sizes, shown):
    with raises(ValueError, "a PackedSequence's batch_sizes must be a 1-D int64 tensor on the CPU (as "
                            f"pack_padded_sequence makes it), got {shown}"):
        lstm(PackedSequence(torch.randn(3, 3), batch_sizes))


def test_a_packed_sequence_whose_indices_are_no_permutation_is_refused(lstm):
    packed = pack_padded_sequence(torch.randn(5, 3, 3), [5, 2, 4], enforce_sorted=False)
    with raises(ValueError, "a PackedSequence's sorted_indices must be a permutation of its 3 sequences, got "
                            "[0, 0, 1]"):
        lstm(PackedSequence(packed.data, packed.batch_sizes, torch.tensor([0, 0, 1]), packed.unsorted_indices))
    with raises(ValueError, "a PackedSequence's unsorted_indices must undo its sorted_indices (unsorted_indices["
                            "sorted_indices] = 0, 1, ...); the outputs would come back in another order"):
        lstm(PackedSequence(packed.data, packed.batch_sizes, torch.tensor([2, 0, 1]), torch.tensor([0, 1, 2])))


@pytest.mark.parametrize("engine", ["auto", "native", "reference", "fused"])
def test_a_packed_sequence_with_unsorted_indices_alone_is_refused(engine):
    """torch.nn takes it (initial state in the packed order, final state unsorted); the
    reference and fused engines paired each sequence's length with another's rows: outputs off by 0.24."""
    packed = pack_padded_sequence(torch.randn(5, 3, 3), [5, 3, 2])
    with raises(ValueError, "a PackedSequence's unsorted_indices come with its sorted_indices, which they undo "
                            "(torch's packing never makes one without the other)"):
        lstmkit.LSTM(3, 4, engine=engine)(PackedSequence(packed.data, packed.batch_sizes, None,
                                                         torch.tensor([2, 0, 1])))


@pytest.mark.parametrize("engine", ["auto", "reference", "fused"])
@pytest.mark.parametrize("shape", [(5, 3, 1, 8), (5, 3, 2, 8)])
def test_packed_data_that_is_not_2d_is_refused_on_every_engine(engine, shape):
    """Each engine failed its own way deep inside, or (reference, one channel) returned h_n of
    shape (1, 3, 3, 4)."""
    packed = pack_padded_sequence(torch.randn(*shape), [5, 2, 3], enforce_sorted=False)
    with raises(ValueError, f"a PackedSequence's data must be 2-D (rows, input_size), got 3-D with shape "
                            f"{(10, *shape[2:])}: pack a 3-D (T, B, input_size) batch"):
        lstmkit.LSTM(8, 4, engine=engine)(packed)


def test_a_call_with_lengths_under_torch_export_says_it_does_not_export(lstm):
    """torch's own error named a data-dependent guard, Eq(u0, 1), and no lengths."""
    class Padded(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = lstm

        def forward(self, x, lengths):
            return self.layer(x, lengths=lengths)[0]

    with raises(ValueError, "a call with lengths= or a PackedSequence does not export: torch.export cannot trace "
                            "the check of the lengths (nor torch.nn's packing)"):
        torch.export.export(Padded(), (torch.randn(6, 2, 3), torch.tensor([6, 3])))


def test_a_packed_call_under_torch_export_says_it_does_not_export(lstm):
    """The fake batch_sizes torch.export traces with are float32: the message blamed the
    PackedSequence, as if it had been built by hand."""
    class Packing(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = lstm

        def forward(self, x, lengths):
            return self.layer(pack_padded_sequence(x, lengths, enforce_sorted=False))[0].data

    with raises(ValueError, "a call with lengths= or a PackedSequence does not export"):
        torch.export.export(Packing(), (torch.randn(6, 2, 3), torch.tensor([6, 3])))


def test_lengths_with_packed_input(lstm):
    packed = pack_padded_sequence(torch.randn(6, 2, 3), [6, 2])
    with raises(ValueError, "lengths= is for padded tensor input; a PackedSequence carries its own lengths"):
        lstm(packed, lengths=[6, 2])


def test_a_step_of_the_wrong_size_names_the_shape_given():
    with raises(ValueError, "input.size(-1) must equal input_size=3, got 7 (input shape (2, 7))"):
        lstmkit.LSTM(3, 4, num_layers=2).step(torch.randn(2, 7))


def test_packed_input_with_wrong_features(lstm):
    packed = pack_padded_sequence(torch.randn(6, 2, 5), [6, 2])
    with raises(ValueError, "input.size(-1) must equal input_size=3, got 5"):
        lstm(packed)


def test_native_engine_on_a_cell_without_native_kernels():
    with raises(ValueError, "engine='native' cannot run this layer: cell 'peephole' has no native kernel "
                            "(native runs lstm, gru and rnn); use engine='auto' or 'fused'"):
        lstmkit.PeepholeLSTM(3, 4, engine="native")


def test_a_layer_whose_bias_is_set_false_after_building_runs_as_torch_nn():
    """Its biases stay parameters, which torch.nn still reads; the shape check looked them up
    among the shapes of a layer without biases and failed with a bare KeyError."""
    torch.manual_seed(0)
    layer, twin = lstmkit.LSTM(3, 4), torch.nn.LSTM(3, 4)
    twin.load_state_dict(layer.state_dict())
    layer.bias = twin.bias = False
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(layer(x)[0], twin(x)[0], rtol=0, atol=0)


def test_a_long_value_is_named_abbreviated():
    """A second of log-probabilities given as nested lists made a message of 330,000 characters."""
    from lstmkit.received import received

    assert received(list(range(1000))) == "[0, 1, 2, ...] (list)"
    assert received([[0.5] * 16] * 1000) == ("[[0.5, 0.5, 0.5, ...], [0.5, 0.5, 0.5, ...], [0.5, 0.5, 0.5, ...], ...] "
                                             "(list)")
    assert received((0.1,)) == "(0.1,) (tuple)" and received(list(range(40))) == f"{list(range(40))} (list)"
